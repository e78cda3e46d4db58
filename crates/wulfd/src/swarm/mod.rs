//! The swarm's tracker: for each image, the nodes fetching or holding it (this head's view:
//! each head tracks the nodes that ask it) and who gets the image from whom. The first
//! `[boot] peers_from_head` ([`DIRECT`]) nodes get it from the head; every later one from
//! the member that joined earliest and serves fewer than `[boot] peers_per_node`
//! ([`FANOUT`]) nodes (never one of its own descendants, so no two nodes wait on each
//! other; when every member is full, from the head). Members are forgotten [`MEMBER_SECS`] after they joined,
//! or when a node reports that it could not get pieces from them. See
//! `docs/admin/boot.md#peer-assisted-image-downloads`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wulf_api::swarm::PIECE_SIZE;

pub mod routes;

/// Nodes that get an image from the head itself (while they are members), by default.
pub const DIRECT: usize = 4;
/// Nodes one member serves at most, by default.
pub const FANOUT: usize = 4;

/// How many nodes get an image from the head, and how many one node serves.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub direct: usize,
    pub fanout: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            direct: DIRECT,
            fanout: FANOUT,
        }
    }
}
/// How long a member is sent nodes after it joined (its tickets last as long).
pub const MEMBER_SECS: u64 = 600;
/// How long a node keeps serving after its download when no one asks it for a piece.
pub const SERVE_SECS: u64 = 120;

/// An image's pieces, as the head computed them from its stored file.
#[derive(Debug)]
pub struct Pieces {
    pub size: u64,
    pub hashes: Vec<String>,
}

/// Where a member gets the image from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    Head,
    Peer(IpAddr),
    /// Its peer was forgotten; it will ask again.
    Lost,
}

struct Member {
    addr: SocketAddr,
    from: From,
    children: usize,
    joined: Instant,
}

#[derive(Default)]
struct Swarm {
    members: HashMap<IpAddr, Member>,
}

impl Swarm {
    fn expire(&mut self, now: Instant) {
        let ttl = Duration::from_secs(MEMBER_SECS);
        let old: Vec<IpAddr> = self
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.joined) > ttl)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in old {
            self.remove(ip);
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        if let Some(m) = self.members.remove(&ip) {
            if let From::Peer(p) = m.from {
                if let Some(p) = self.members.get_mut(&p) {
                    p.children = p.children.saturating_sub(1);
                }
            }
            for c in self.members.values_mut() {
                if c.from == From::Peer(ip) {
                    c.from = From::Lost;
                }
            }
        }
    }

    /// Whether `m` gets the image (through others) from `ancestor`.
    fn descends_from(&self, mut m: IpAddr, ancestor: IpAddr) -> bool {
        for _ in 0..=self.members.len() {
            match self.members.get(&m).map(|x| x.from) {
                Some(From::Peer(p)) if p == ancestor => return true,
                Some(From::Peer(p)) => m = p,
                _ => return false,
            }
        }
        false
    }

    /// Add (or re-add) the node at `addr` and say where it gets the image from. A node that
    /// asks again keeps the nodes it serves (they still get pieces from it).
    fn join(&mut self, addr: SocketAddr, now: Instant, shape: Shape) -> Option<SocketAddr> {
        let ip = addr.ip();
        let (children, joined) = match self.members.remove(&ip) {
            Some(m) => {
                if let From::Peer(p) = m.from {
                    if let Some(p) = self.members.get_mut(&p) {
                        p.children = p.children.saturating_sub(1);
                    }
                }
                (m.children, m.joined)
            }
            None => (0, now),
        };
        let direct = self
            .members
            .values()
            .filter(|m| m.from == From::Head)
            .count();
        let parent = if direct < shape.direct {
            None
        } else {
            self.members
                .iter()
                .filter(|(p, m)| m.children < shape.fanout && !self.descends_from(**p, ip))
                .min_by_key(|(p, m)| (m.joined, **p))
                .map(|(p, m)| (*p, m.addr))
        };
        if let Some((p, _)) = parent {
            if let Some(m) = self.members.get_mut(&p) {
                m.children += 1;
            }
        }
        self.members.insert(
            ip,
            Member {
                addr,
                from: parent.map_or(From::Head, |(p, _)| From::Peer(p)),
                children,
                joined,
            },
        );
        parent.map(|(_, a)| a)
    }
}

type PieceCell = Arc<tokio::sync::OnceCell<Result<Arc<Pieces>, String>>>;

/// Every image's swarm on this head, and the images' pieces.
#[derive(Default)]
pub struct Swarms {
    shape: Shape,
    swarms: Mutex<HashMap<String, Swarm>>,
    pieces: Mutex<HashMap<String, PieceCell>>,
}

/// Where a node that joined gets the image from, and the swarm's size after it joined.
pub struct Joined {
    /// `None`: from the head.
    pub from: Option<SocketAddr>,
    pub members: usize,
    /// Members that get the image from the head.
    pub direct: usize,
}

impl Swarms {
    pub fn new(shape: Shape) -> Swarms {
        Swarms {
            shape,
            ..Default::default()
        }
    }

    /// Add the node at `addr` (`IP:PORT` it serves on) to image `sha256`'s swarm.
    /// `failed`: the member it could not get pieces from, which is forgotten.
    pub fn join(&self, sha256: &str, addr: SocketAddr, failed: Option<SocketAddr>) -> Joined {
        let now = Instant::now();
        let mut all = self.swarms.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.entry(sha256.to_string()).or_default();
        s.expire(now);
        if let Some(f) = failed {
            if s.members.get(&f.ip()).is_some_and(|m| m.addr == f) {
                s.remove(f.ip());
            }
        }
        let from = s.join(addr, now, self.shape);
        Joined {
            from,
            members: s.members.len(),
            direct: s.members.values().filter(|m| m.from == From::Head).count(),
        }
    }

    /// The pieces of the stored file `path` (image `sha256`), computed once; an error when
    /// the file's content is not `sha256` (a damaged store).
    pub async fn pieces(&self, sha256: &str, path: &Path) -> Result<Arc<Pieces>, String> {
        let cell = {
            let mut all = self.pieces.lock().unwrap_or_else(|p| p.into_inner());
            all.entry(sha256.to_string()).or_default().clone()
        };
        let path = path.to_path_buf();
        let sha = sha256.to_string();
        let r = cell
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || hash_pieces(&path, &sha))
                    .await
                    .unwrap_or_else(|e| Err(format!("hashing the pieces failed: {e}")))
            })
            .await
            .clone();
        if r.is_err() {
            // Not kept: the next request tries again (the file may be mended).
            self.pieces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(sha256);
        }
        r
    }
}

fn hash_pieces(path: &Path, sha256: &str) -> Result<Arc<Pieces>, String> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut whole = Sha256::new();
    let mut hashes = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut piece = Sha256::new();
        let mut in_piece = 0u64;
        while in_piece < PIECE_SIZE {
            let want = (buf.len() as u64).min(PIECE_SIZE - in_piece) as usize;
            let n = f
                .read(&mut buf[..want])
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            piece.update(&buf[..n]);
            whole.update(&buf[..n]);
            in_piece += n as u64;
        }
        if in_piece == 0 {
            break;
        }
        size += in_piece;
        hashes.push(hex::encode(piece.finalize()));
        if in_piece < PIECE_SIZE {
            break;
        }
    }
    let got = hex::encode(whole.finalize());
    if got != sha256 {
        return Err(format!(
            "the stored image {sha256} is damaged: its content's sha256 is {got}"
        ));
    }
    Ok(Arc::new(Pieces { size, hashes }))
}

/// Image `sha256`'s share key: nodes that may have the image check each other's tickets
/// with it.
pub fn share_key(node_secret: &[u8], sha256: &str) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(node_secret) {
        Ok(mut m) => {
            m.update(format!("wulf swarm share key:{sha256}").as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7451))
    }

    #[test]
    fn a_few_from_the_head_the_rest_from_peers() {
        let mut s = Swarm::default();
        let t = Instant::now();
        let mut from_head = 0;
        let mut sources: HashMap<SocketAddr, usize> = HashMap::new();
        for i in 1..=100u8 {
            match s.join(a(i), t + Duration::from_millis(i as u64), Shape::default()) {
                None => from_head += 1,
                Some(p) => *sources.entry(p).or_default() += 1,
            }
        }
        assert_eq!(from_head, DIRECT);
        assert!(sources.values().all(|n| *n <= FANOUT), "{sources:?}");
        // The earliest members serve first.
        assert_eq!(sources.get(&a(1)), Some(&FANOUT));
        assert!(!sources.contains_key(&a(100)));
    }

    #[test]
    fn a_failed_member_is_replaced_and_never_by_a_descendant() {
        let mut s = Swarm::default();
        let t = Instant::now();
        for i in 1..=30u8 {
            s.join(a(i), t + Duration::from_millis(i as u64), Shape::default());
        }
        // Node 5 got the image from node 1; it reports node 1 and joins again.
        assert_eq!(s.members[&a(5).ip()].from, From::Peer(a(1).ip()));
        assert_eq!(s.members[&a(21).ip()].from, From::Peer(a(5).ip()));
        // Every member is full but node 5's own nodes: 5 asking again must not be sent to
        // them (they wait on 5 for their pieces), so it gets the head.
        // (Node 1 gets one back when 5 leaves it.)
        for (ip, m) in s.members.iter_mut() {
            if m.from != From::Peer(a(5).ip()) {
                m.children = FANOUT + usize::from(*ip == a(1).ip());
            }
        }
        assert_eq!(
            s.join(a(5), t + Duration::from_secs(1), Shape::default()),
            None
        );
        assert_eq!(s.members[&a(5).ip()].children, FANOUT, "5 keeps its nodes");
        // Node 1 fails: its nodes are lost until they ask again; its place at the head
        // goes to the next to ask.
        s.remove(a(1).ip());
        assert_eq!(s.members[&a(6).ip()].from, From::Lost);
        let direct = s.members.values().filter(|m| m.from == From::Head).count();
        assert_eq!(direct, DIRECT, "1 left, 5 came");
    }

    #[test]
    fn members_expire() {
        let mut s = Swarm::default();
        let t = Instant::now();
        for i in 1..=5u8 {
            s.join(a(i), t, Shape::default());
        }
        s.expire(t + Duration::from_secs(MEMBER_SECS + 1));
        assert!(s.members.is_empty());
        assert_eq!(
            s.join(
                a(9),
                t + Duration::from_secs(MEMBER_SECS + 2),
                Shape::default()
            ),
            None
        );
    }

    #[test]
    fn pieces_of_a_file_and_a_damaged_one() {
        let dir = std::env::temp_dir().join(format!("wulf-swarm-pieces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let data: Vec<u8> = (0..(PIECE_SIZE as usize * 2 + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&p, &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        let got = hash_pieces(&p, &sha).unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(got.hashes.len(), 3);
        assert_eq!(
            got.hashes[2],
            hex::encode(Sha256::digest(&data[PIECE_SIZE as usize * 2..]))
        );
        assert!(hash_pieces(&p, &"0".repeat(64))
            .unwrap_err()
            .contains("damaged"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Peer-assisted image downloads (the swarm). A node whose boot has `wulf.swarm=PORT` asks
//! its head for a plan (`GET /boot/swarm/SHA256?port=PORT`, with the same `Authorization` as
//! the image download): the image's size, its pieces' SHA-256s and where to get the pieces
//! from, either the head itself or a peer node that is downloading or holds the image. The
//! node fetches the pieces in order, checks each against its hash, and from the start serves
//! the pieces it holds on `PORT` (`GET /piece/SHA256/INDEX`) to the nodes the head sends to
//! it. A peer gives a piece only to a node with a ticket from the head for the node's own
//! address; it checks the ticket with the image's share key, which the head hands only to
//! nodes that may have the image. A node that cannot get a piece from its peer (refused, too
//! slow, a wrong hash) tells the head (`?failed=IP:PORT`) and gets a new source.
//!
//! The head gives a few nodes the image itself ([`Plan::peer`] is `None`) and sends the rest
//! to peers, at most a few per peer, so one image leaves the head only a few times however
//! many nodes boot it.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub mod fetch;
mod http;
pub mod serve;
pub mod store;

/// The port a node serves pieces on unless its boot says another.
pub const PORT: u16 = 7451;
/// The size of every piece but the last.
pub const PIECE_SIZE: u64 = 4 << 20;
/// The head's plan: `GET {PLAN_PATH}SHA256?port=PORT[&failed=IP:PORT]`.
pub const PLAN_PATH: &str = "/boot/swarm/";
/// A peer's pieces: `GET {PIECE_PATH}SHA256/INDEX`.
pub const PIECE_PATH: &str = "/piece/";

/// The head's answer to a node that asks where to get an image's pieces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub sha256: String,
    /// Bytes of the image.
    pub size: u64,
    /// Bytes of every piece but the last.
    pub piece_size: u64,
    /// Each piece's SHA-256 (lower-case hex), in order.
    pub pieces: Vec<String>,
    /// The peer to get the pieces from (`IP:PORT`); `None`: from the head.
    pub peer: Option<String>,
    /// Shows the peer that the head sent this node (for the node's own address).
    pub ticket: String,
    /// The image's share key (hex): checks the tickets of the nodes sent to this one.
    pub key: String,
    /// Seconds the node keeps serving after its download when no one asks it for a piece.
    pub serve_secs: u64,
}

impl Plan {
    pub fn count(&self) -> usize {
        self.pieces.len()
    }

    /// Offset and length of piece `i`.
    pub fn span(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.piece_size;
        (start, self.piece_size.min(self.size.saturating_sub(start)))
    }

    /// Whether the plan is consistent: the pieces cover exactly `size` bytes.
    pub fn check(&self) -> Result<(), String> {
        if self.piece_size == 0 {
            return Err("the plan's piece size is 0".into());
        }
        let want = self.size.div_ceil(self.piece_size);
        if self.pieces.len() as u64 != want {
            return Err(format!(
                "the plan lists {} pieces; {} bytes in pieces of {} make {want}",
                self.pieces.len(),
                self.size,
                self.piece_size
            ));
        }
        if let Some(bad) = self
            .pieces
            .iter()
            .find(|p| p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("the plan's piece hash {bad:?} is not a SHA-256"));
        }
        Ok(())
    }
}

fn ticket_mac(key: &[u8], sha256: &str, ip: IpAddr, expiry: u64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("wulf swarm ticket:{sha256}:{ip}:{expiry}").as_bytes());
    Some(mac)
}

/// A ticket for the node at `ip` to get pieces of image `sha256` from its peers until the
/// Unix time `expiry`: `EXPIRY:HMAC`.
pub fn ticket(key: &[u8], sha256: &str, ip: IpAddr, expiry: u64) -> String {
    match ticket_mac(key, sha256, ip, expiry) {
        Some(m) => format!("{expiry}:{}", hex::encode(m.finalize().into_bytes())),
        None => String::new(),
    }
}

/// Whether `ticket` lets the node at `ip` have pieces of `sha256` at Unix time `now`.
pub fn ticket_ok(key: &[u8], sha256: &str, ip: IpAddr, ticket: &str, now: u64) -> bool {
    let Some((expiry, proof)) = ticket.split_once(':') else {
        return false;
    };
    let (Ok(expiry), Ok(proof)) = (expiry.parse::<u64>(), hex::decode(proof)) else {
        return false;
    };
    if now > expiry {
        return false;
    }
    ticket_mac(key, sha256, ip, expiry).is_some_and(|m| m.verify_slice(&proof).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_name_the_image_the_address_and_the_time() {
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let t = ticket(b"key", "abc", ip, 1000);
        assert!(ticket_ok(b"key", "abc", ip, &t, 999));
        assert!(ticket_ok(b"key", "abc", ip, &t, 1000));
        assert!(!ticket_ok(b"key", "abc", ip, &t, 1001));
        assert!(!ticket_ok(b"key", "abd", ip, &t, 999));
        assert!(!ticket_ok(b"other", "abc", ip, &t, 999));
        assert!(!ticket_ok(
            b"key",
            "abc",
            "10.0.0.6".parse().unwrap(),
            &t,
            999
        ));
        let later = t.replacen("1000:", "2000:", 1);
        assert!(!ticket_ok(b"key", "abc", ip, &later, 1500));
        for bad in ["", ":", "x:y", "1000", "1000:zz"] {
            assert!(!ticket_ok(b"key", "abc", ip, bad, 0), "{bad}");
        }
    }

    #[test]
    fn spans_and_checks() {
        let mut p = Plan {
            sha256: "s".into(),
            size: 10,
            piece_size: 4,
            pieces: vec!["a".repeat(64); 3],
            peer: None,
            ticket: String::new(),
            key: String::new(),
            serve_secs: 0,
        };
        assert_eq!(p.span(0), (0, 4));
        assert_eq!(p.span(2), (8, 2));
        assert!(p.check().is_ok());
        p.pieces.pop();
        assert!(p.check().unwrap_err().contains("make 3"));
        p.pieces.push("g".repeat(64));
        assert!(p.check().is_err());
        p.piece_size = 0;
        assert!(p.check().is_err());
    }
}

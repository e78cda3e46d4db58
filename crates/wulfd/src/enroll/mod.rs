//! Node enrollment: how a booting node gets its credential without anyone else getting it.
//!
//! The boot script of a node that is not up carries a one-time enrollment token
//! (`wulf.enroll=TOKEN`), random, bound to the address the script was asked from, good for
//! [`TOKEN_TTL`]. A node with a reserved address (its `ip`, which is what this head's DHCP
//! server leases it) gets a token only when it asks from that address; simulated nodes are
//! exempt from that (one `wulf sim` process plays them all from one address). The node's
//! agent trades the token, once, from the same address, at `POST /api/v1/node/enroll`
//! ([`routes`]) for its credential of this boot: HMAC-SHA256 of `UID:NONCE` under the
//! cluster's node secret, with a fresh random nonce stored at `/wulf/node-cred/UID` so every
//! head checks it. Each enrollment replaces the nonce, so the previous credential stops
//! working. See docs/security.md, "Node credentials and images".
//!
//! Standalone nodes (servers wulf did not boot) get theirs from an admin instead, kept
//! hashed in the store so any head accepts it ([`standalone`]).
//!
//! Boot-script tokens live in this head's memory only (the node trades its token at the head that served
//! its boot script, `wulf.head=`); nonces are cached per head, kept current by a watch of the
//! store (several heads) and re-read at most once a second per node when a credential does
//! not match.

pub mod images;
pub mod installed;
pub mod routes;
pub mod standalone;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use wulf_model::{Kind, NodeState};
use wulf_store::{EventKind, Expect, StoreError};

use crate::app::App;

/// How long an enrollment token is good for after its boot script was served.
pub const TOKEN_TTL: Duration = Duration::from_secs(600);
/// A node whose credential does not match what this head knows makes it read the store
/// again at most this often.
const RECHECK: Duration = Duration::from_secs(1);

/// How often issuing a token also drops the expired ones: a sweep walks every ticket, so one
/// per issue would cost a boot of N nodes N² steps.
const SWEEP: Duration = Duration::from_secs(10);
/// Store keys of the nodes' current nonces: `/wulf/node-cred/{uid}`.
pub const NONCE_PREFIX: &str = "/wulf/node-cred/";

/// A node's credential for the boot whose enrollment stored `nonce`.
pub fn credential(secret: &[u8], uid: &str, nonce: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(uid.as_bytes());
    mac.update(b":");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The address a request came from, as the listener saw it (IPv4-mapped IPv6 as IPv4).
/// None only when the listener gives no connection info, which `wulfd`'s always does.
pub fn peer_ip(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<axum::extract::ConnectInfo<crate::web::Conn>>()
        .map(|c| c.0.peer.ip().to_canonical())
}

/// How an address is named in audit lines.
pub fn source(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "-".to_string(), |p| p.to_string())
}

/// One node's enrollment token (its 32 random bytes, not their 64-character hex text: a
/// boot of 100,000 nodes keeps 100,000 of them for [`TOKEN_TTL`]).
struct Ticket {
    token: [u8; 32],
    /// The address its boot script was asked from.
    ip: Option<IpAddr>,
    issued: Instant,
    used: bool,
}

impl Ticket {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.issued) > TOKEN_TTL
    }
}

/// Every node's live ticket, the tokens that enrolled, and when expired ones were last
/// dropped.
#[derive(Default)]
struct Tickets {
    by_uid: HashMap<Box<str>, Ticket>,
    /// The first 16 bytes of each token that enrolled (so a replay is told "used already"),
    /// with when it was issued: 32 bytes a node once its boot is done instead of a ticket.
    used: HashMap<u128, Instant>,
    swept: Option<Instant>,
}

/// The key of a token in [`Tickets::used`].
fn used_key(token: &[u8; 32]) -> u128 {
    let mut head = [0u8; 16];
    head.copy_from_slice(&token[..16]);
    u128::from_le_bytes(head)
}

/// What this head knows of a node's nonce.
#[derive(Clone, Default)]
struct Nonce {
    value: Option<Box<str>>,
    /// When the store was last read for it.
    read: Option<Instant>,
}

/// Why an enrollment token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no enrollment token of this node is live on this head (it is handed out in the boot script of a node that is not up)")]
    Unknown,
    #[error("the enrollment token is not the one this node's boot script carried")]
    Wrong,
    #[error("the enrollment token was used already (each boot script's token enrolls once)")]
    Used,
    #[error("the enrollment token expired (it is good for {} minutes after the boot script)", TOKEN_TTL.as_secs() / 60)]
    Expired,
    #[error("the enrollment token was handed to {bound}, not to {from}")]
    WrongAddress { bound: IpAddr, from: IpAddr },
}

/// Enrollment tokens handed out by this head, and the nodes' nonces as this head knows them.
#[derive(Default)]
pub struct Enrollment {
    tickets: Mutex<Tickets>,
    nonces: Mutex<HashMap<Box<str>, Nonce>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Enrollment {
    /// A fresh token for node `uid`, bound to `ip`; it replaces the node's earlier one.
    pub fn issue(&self, uid: &str, ip: Option<IpAddr>) -> String {
        let raw = rand::random::<[u8; 32]>();
        let now = Instant::now();
        let mut t = lock(&self.tickets);
        if t.swept.is_none_or(|at| now.duration_since(at) >= SWEEP) {
            t.by_uid.retain(|_, k| !k.expired(now));
            t.used
                .retain(|_, issued| now.duration_since(*issued) <= TOKEN_TTL);
            // Give back the room of a boot storm once it is over.
            if t.by_uid.len() < t.by_uid.capacity() / 4 {
                t.by_uid.shrink_to_fit();
            }
            if t.used.len() < t.used.capacity() / 4 {
                t.used.shrink_to_fit();
            }
            t.swept = Some(now);
        }
        t.by_uid.insert(
            uid.into(),
            Ticket {
                token: raw,
                ip,
                issued: now,
                used: false,
            },
        );
        hex::encode(raw)
    }

    /// Check `token` for node `uid` presented from `from`; with `consume`, use it up.
    /// An attempt from the wrong address does not use the token up.
    pub fn check_token(
        &self,
        uid: &str,
        token: &str,
        from: Option<IpAddr>,
        consume: bool,
    ) -> Result<(), TokenError> {
        let mut given = [0u8; 32];
        let well_formed = hex::decode_to_slice(token, &mut given).is_ok();
        let mut t = lock(&self.tickets);
        let Some(k) = t.by_uid.get_mut(uid) else {
            return Err(if well_formed && t.used.contains_key(&used_key(&given)) {
                TokenError::Used
            } else {
                TokenError::Unknown
            });
        };
        if !well_formed || !bool::from(k.token.ct_eq(&given)) {
            return Err(TokenError::Wrong);
        }
        if k.used {
            return Err(TokenError::Used);
        }
        if k.expired(Instant::now()) {
            return Err(TokenError::Expired);
        }
        if let (Some(bound), Some(from)) = (k.ip, from) {
            if bound != from {
                return Err(TokenError::WrongAddress { bound, from });
            }
        }
        if consume {
            k.used = true;
        }
        Ok(())
    }

    /// The consumed token of node `uid` enrolled: keep only what tells a replay it was used.
    fn retire(&self, uid: &str, token: &str) {
        let mut t = lock(&self.tickets);
        if t.by_uid
            .get(uid)
            .is_some_and(|k| k.used && hex::encode(k.token) == token)
        {
            if let Some(k) = t.by_uid.remove(uid) {
                t.used.insert(used_key(&k.token), k.issued);
            }
        }
    }

    /// Give a consumed token back (its enrollment could not be stored).
    fn unconsume(&self, uid: &str, token: &str) {
        if let Some(k) = lock(&self.tickets).by_uid.get_mut(uid) {
            if hex::encode(k.token) == token {
                k.used = false;
            }
        }
    }

    fn cached(&self, uid: &str) -> Nonce {
        lock(&self.nonces).get(uid).cloned().unwrap_or_default()
    }

    fn remember(&self, uid: &str, value: Option<String>, read: bool) {
        let mut n = lock(&self.nonces);
        let e = n.entry(uid.into()).or_default();
        e.value = value.map(String::into_boxed_str);
        if read {
            e.read = Some(Instant::now());
        }
    }

    /// Claim the right to read node `uid`'s nonce from the store now: at most once a second.
    fn may_reread(&self, uid: &str) -> bool {
        let mut n = lock(&self.nonces);
        let e = n.entry(uid.into()).or_default();
        if e.read.is_some_and(|t| t.elapsed() < RECHECK) {
            return false;
        }
        e.read = Some(Instant::now());
        true
    }

    /// Forget every cached nonce (the store's watch was lost: read them again as needed).
    fn forget_all(&self) {
        lock(&self.nonces).clear();
    }
}

pub(crate) fn nonce_key(uid: &str) -> String {
    format!("{NONCE_PREFIX}{uid}")
}

async fn read_nonce(app: &App, uid: &str) -> Result<Option<String>, StoreError> {
    Ok(app
        .store
        .get(&nonce_key(uid))
        .await?
        .and_then(|kv| String::from_utf8(kv.value).ok()))
}

fn node_exists(app: &App, uid: &str) -> bool {
    app.cache.read().get(Kind::Node, uid).is_some()
}

/// Node `uid`'s state as this head sees it now.
pub fn state_of(app: &App, uid: &str) -> Option<NodeState> {
    let st = app.cache.read();
    app.status
        .states(&st, &[uid.to_string()])
        .pop()
        .map(|(s, _, _)| s)
}

/// True when `cred` is node `uid`'s current credential. The nonce comes from this head's
/// cache; on a mismatch the store is read again (at most once a second per node).
pub async fn verify(app: &App, uid: &str, cred: &str) -> bool {
    if !node_exists(app, uid) {
        return false;
    }
    let matches = |nonce: Option<&str>| {
        nonce.is_some_and(|n| {
            let want = credential(&app.node_secret, uid, n);
            bool::from(want.as_bytes().ct_eq(cred.as_bytes()))
        })
    };
    if matches(app.enroll.cached(uid).value.as_deref()) {
        return true;
    }
    if !app.enroll.may_reread(uid) {
        return false;
    }
    match read_nonce(app, uid).await {
        Ok(n) => {
            let ok = matches(n.as_deref());
            app.enroll.remember(uid, n, false);
            ok
        }
        Err(e) => {
            tracing::warn!(node = %uid, error = %e, "cannot read the node's credential nonce");
            false
        }
    }
}

/// Node `uid`'s current credential (to sign its commands), None when it never enrolled.
pub async fn current_credential(app: &App, uid: &str) -> Option<String> {
    let nonce = match app.enroll.cached(uid).value {
        Some(n) => n.into_string(),
        None => {
            let n = read_nonce(app, uid).await.ok().flatten()?;
            app.enroll.remember(uid, Some(n.clone()), true);
            n
        }
    };
    Some(credential(&app.node_secret, uid, &nonce))
}

/// Revoke node `uid`'s credential (its box was replaced): the nonce is deleted, so no
/// credential of it works on any head until the node enrolls again.
pub async fn revoke(app: &App, uid: &str) -> Result<(), StoreError> {
    app.store.delete(&nonce_key(uid), Expect::Any).await?;
    app.enroll.remember(uid, None, true);
    Ok(())
}

/// Store a fresh nonce for node `uid` (replacing the last) and return its new credential.
async fn rotate(app: &App, uid: &str) -> Result<String, StoreError> {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    app.store
        .put(&nonce_key(uid), nonce.clone().into_bytes(), Expect::Any)
        .await?;
    app.enroll.remember(uid, Some(nonce.clone()), true);
    Ok(credential(&app.node_secret, uid, &nonce))
}

/// Whether node `uid`'s boot script asked from `peer` may carry an enrollment token: the node
/// is not up, and a node with a reserved address (not simulated) asks from that address. The
/// answer says why not, for the script; refusals are logged as AUDIT warnings.
pub fn may_issue(app: &App, uid: &str, mac: &str, peer: Option<IpAddr>) -> Result<(), String> {
    let src = source(peer);
    let (name, reserved) = {
        let st = app.cache.read();
        let Some(node) = st.get(Kind::Node, uid).and_then(|e| e.obj.as_node()) else {
            return Err("not a node of this cluster".into());
        };
        let reserved = (node.node_type != "simulated").then_some(node.ip).flatten();
        (node.name.clone(), reserved)
    };
    if state_of(app, uid) == Some(NodeState::Up) {
        tracing::warn!(target: "audit", source = %src, node = %name, %mac, "refused an enrollment token: boot script of {name} asked from {src} while the node is up");
        return Err(format!(
            "{name} is up; a boot script for a node that is up carries no enrollment"
        ));
    }
    // `peer` is None only without connection info, which the head's listener always gives.
    if let (Some(ip), Some(peer)) = (reserved, peer) {
        if IpAddr::V4(ip) != peer {
            tracing::warn!(target: "audit", source = %src, node = %name, %mac, reserved = %ip, "refused an enrollment token: boot script of {name} asked from {src}, not from its address {ip}");
            return Err(format!(
                "{name} boots from its address {ip}; this request came from {src}"
            ));
        }
    }
    Ok(())
}

/// Keep the cached nonces current with what other heads store (only with a shared store: an
/// embedded store has one head, which made every change itself).
pub async fn follow(app: Arc<App>, cancel: CancellationToken) {
    if !app.store.shared() {
        return;
    }
    loop {
        let from = match app.store.revision().await {
            Ok(r) => r + 1,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store revision for node credentials");
                if sleep_or_cancel(&cancel).await {
                    return;
                }
                continue;
            }
        };
        // Whatever changed before the watch starts is read again when next presented.
        app.enroll.forget_all();
        let mut watch = match app.store.watch(NONCE_PREFIX, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch node credentials; retrying");
                if sleep_or_cancel(&cancel).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                n = watch.next() => n,
            };
            match next {
                Some(Ok(batch)) => {
                    for ev in batch.events {
                        let Some(uid) = ev.kv.key.strip_prefix(NONCE_PREFIX) else {
                            continue;
                        };
                        let value = match ev.kind {
                            EventKind::Put => String::from_utf8(ev.kv.value.clone()).ok(),
                            EventKind::Delete => None,
                        };
                        app.enroll.remember(uid, value, false);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "node credential watch ended; watching again");
                    break;
                }
                None => break,
            }
        }
        app.enroll.forget_all();
        if sleep_or_cancel(&cancel).await {
            return;
        }
    }
}

/// Sleep a second; true when cancelled meanwhile.
async fn sleep_or_cancel(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_differ_per_node_nonce_and_secret() {
        let a = credential(b"secret", "n0uid", "nonce1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, credential(b"secret", "n0uid", "nonce1"));
        assert_ne!(a, credential(b"secret", "n0uid", "nonce2"));
        assert_ne!(a, credential(b"secret", "n1uid", "nonce1"));
        assert_ne!(a, credential(b"other", "n0uid", "nonce1"));
        // The separator keeps (uid, nonce) pairs apart.
        assert_ne!(credential(b"s", "ab", "c"), credential(b"s", "a", "bc"));
    }

    #[test]
    fn tokens_are_single_use_bound_and_replaced() {
        let e = Enrollment::default();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let other: IpAddr = "10.0.0.6".parse().unwrap();
        let t = e.issue("n0", Some(ip));
        assert_eq!(t.len(), 64);
        assert_eq!(
            e.check_token("n1", &t, Some(ip), true),
            Err(TokenError::Unknown)
        );
        assert_eq!(
            e.check_token("n0", "nope", Some(ip), true),
            Err(TokenError::Wrong)
        );
        assert_eq!(
            e.check_token("n0", &t, Some(other), true),
            Err(TokenError::WrongAddress {
                bound: ip,
                from: other
            })
        );
        // A look (image download) leaves it live; the wrong address did not use it up.
        assert_eq!(e.check_token("n0", &t, Some(ip), false), Ok(()));
        assert_eq!(e.check_token("n0", &t, Some(ip), true), Ok(()));
        assert_eq!(
            e.check_token("n0", &t, Some(ip), true),
            Err(TokenError::Used)
        );
        assert_eq!(
            e.check_token("n0", &t, Some(ip), false),
            Err(TokenError::Used)
        );
        // A new boot script replaces the token.
        let t2 = e.issue("n0", Some(ip));
        assert_ne!(t, t2);
        assert_eq!(
            e.check_token("n0", &t, Some(ip), true),
            Err(TokenError::Wrong)
        );
        assert_eq!(e.check_token("n0", &t2, Some(ip), true), Ok(()));
        e.unconsume("n0", &t2);
        assert_eq!(e.check_token("n0", &t2, Some(ip), true), Ok(()));
        // Once the enrollment is stored only the used token's mark stays: a replay is still
        // told the token was used, another token that none is live.
        e.retire("n0", &t2);
        assert!(!lock(&e.tickets).by_uid.contains_key("n0"));
        assert_eq!(
            e.check_token("n0", &t2, Some(ip), true),
            Err(TokenError::Used)
        );
        assert_eq!(
            e.check_token("n0", &t, Some(ip), false),
            Err(TokenError::Unknown)
        );
        // A token that is not consumed is not retired.
        let t3 = e.issue("n1", None);
        e.retire("n1", &t3);
        assert_eq!(e.check_token("n1", &t3, None, true), Ok(()));
    }

    #[test]
    fn tokens_expire() {
        let e = Enrollment::default();
        let t = e.issue("n0", None);
        lock(&e.tickets).by_uid.get_mut("n0").unwrap().issued =
            Instant::now() - TOKEN_TTL - Duration::from_secs(1);
        assert_eq!(
            e.check_token("n0", &t, None, true),
            Err(TokenError::Expired)
        );
        // Expired tokens are dropped by a token issued a sweep interval after the last sweep,
        // and kept by one issued sooner.
        e.issue("n1", None);
        assert!(lock(&e.tickets).by_uid.contains_key("n0"));
        let earlier = lock(&e.tickets).swept.map(|at| at - SWEEP);
        lock(&e.tickets).swept = earlier;
        e.issue("n2", None);
        assert!(!lock(&e.tickets).by_uid.contains_key("n0"));
        assert!(lock(&e.tickets).by_uid.contains_key("n1"));
    }

    #[test]
    fn rereads_are_rate_limited_per_node() {
        let e = Enrollment::default();
        assert!(e.may_reread("n0"));
        assert!(!e.may_reread("n0"));
        assert!(e.may_reread("n1"));
        lock(&e.nonces).get_mut("n0").unwrap().read = Some(Instant::now() - RECHECK);
        assert!(e.may_reread("n0"));
    }
}

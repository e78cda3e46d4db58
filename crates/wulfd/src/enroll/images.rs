//! Who may download a file from `/boot/file/SHA256`: kernels and initramfs files go to
//! anyone (firmware has no credential), an image's content only to a node that boots it and
//! proves it is that node, and to peer heads.
//!
//! A node proves it with `Authorization: Bearer enroll:UID:TOKEN` (the live enrollment token
//! of its boot script, from the address it was handed to: the initramfs downloads the image
//! before the agent trades the token) or `Bearer node:UID:CRED` (its current credential). A
//! head fetching a file it lacks sends `Bearer head:UNIX_SECS:PROOF`, an HMAC of the file and
//! the time under the cluster's node secret, which only heads hold.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use wulf_model::Kind;

use super::source;
use crate::app::App;
use crate::objects::AnyObj;

/// How far a peer head's clock may be off.
const PEER_SKEW_SECS: u64 = 300;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn peer_proof(secret: &[u8], sha256: &str, at: u64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("wulf peer fetch:{sha256}:{at}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The bearer token a head sends when it fetches file `sha256` from a peer head.
pub fn peer_fetch_token(secret: &[u8], sha256: &str) -> String {
    let at = now_secs();
    format!("head:{at}:{}", peer_proof(secret, sha256, at))
}

fn peer_fetch_ok(secret: &[u8], sha256: &str, rest: &str, now: u64) -> bool {
    let Some((at, proof)) = rest.split_once(':') else {
        return false;
    };
    let Ok(at) = at.parse::<u64>() else {
        return false;
    };
    if at.abs_diff(now) > PEER_SKEW_SECS {
        return false;
    }
    let want = peer_proof(secret, sha256, at);
    bool::from(want.as_bytes().ct_eq(proof.as_bytes()))
}

/// The images whose content is file `sha256`, by name.
fn images_of(app: &App, sha256: &str) -> Vec<String> {
    let st = app.cache.read();
    st.objects(Kind::Image)
        .filter_map(|o| match o {
            AnyObj::Image(i) if i.content.as_ref().is_some_and(|c| c.sha256 == sha256) => {
                Some(i.name.clone())
            }
            _ => None,
        })
        .collect()
}

/// True when file `sha256` is an image's content (not for just anyone).
pub fn is_image(app: &App, sha256: &str) -> bool {
    !images_of(app, sha256).is_empty()
}

/// The sha256 of the image node `uid` boots (through its `_boot_config`), and its name.
pub(crate) fn node_image(app: &App, uid: &str) -> Option<(String, String)> {
    let st = app.cache.read();
    let node = st.get(Kind::Node, uid)?.obj.as_node()?;
    let boot = st.attr(node, "_boot_config")?;
    let Some(AnyObj::Boot(bc)) = st.by_name(Kind::Boot, boot).map(|e| e.obj.as_ref()) else {
        return None;
    };
    let image = bc.image.as_deref()?;
    match st.by_name(Kind::Image, image).map(|e| e.obj.as_ref()) {
        Some(AnyObj::Image(i)) => Some((i.content.as_ref()?.sha256.clone(), node.name.clone())),
        _ => None,
    }
}

/// May the request with this `Authorization` header value, from `peer`, download file
/// `sha256`? Anyone may, unless it is an image's content; a refusal says why and is logged
/// as an AUDIT warning with the source address.
pub async fn may_download(
    app: &App,
    sha256: &str,
    authorization: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(), String> {
    let images = images_of(app, sha256);
    if images.is_empty() {
        return Ok(());
    }
    let verdict = admit(app, sha256, authorization, peer).await;
    let src = source(peer);
    match &verdict {
        Err(why) => {
            tracing::warn!(target: "audit", source = %src, sha256, image = %images.join(","), "refused image {} to {src}: {why}", images.join(","));
        }
        // One line per image download (a node booting from its disk cache shows none).
        Ok(who) => {
            tracing::info!(target: "audit", source = %src, sha256, image = %images.join(","), "sending image {} to {src} ({who})", images.join(","));
        }
    }
    verdict.map(|_| ())
}

/// Whether the request with this `Authorization` header value, from `peer`, may have image
/// `sha256`, and who it is ("node UID", "a peer head"); logs nothing.
pub(crate) async fn admit(
    app: &App,
    sha256: &str,
    authorization: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<String, String> {
    let bearer = authorization
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    judge(app, sha256, bearer, peer).await
}

/// Whether the holder of `bearer` may have file `sha256`, and who it is ("node UID", "a peer
/// head").
async fn judge(
    app: &App,
    sha256: &str,
    bearer: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<String, String> {
    let Some(bearer) = bearer else {
        return Err(
            "an image goes only to a node that boots it: send 'Authorization: Bearer \
                    enroll:UID:TOKEN' (the boot's enrollment token) or 'Bearer node:UID:CRED'"
                .into(),
        );
    };
    if let Some(rest) = bearer.strip_prefix("head:") {
        return if peer_fetch_ok(&app.node_secret, sha256, rest, now_secs()) {
            Ok("a peer head".into())
        } else {
            Err(
                "the peer head's proof is not valid (or its clock is more than 5 minutes off)"
                    .into(),
            )
        };
    }
    let (uid, proof, enrolling) = if let Some((u, t)) = wulf_api::enroll::parse_enroll_token(bearer)
    {
        (u, t, true)
    } else if let Some((u, c)) = wulf_api::status::parse_node_token(bearer) {
        (u, c, false)
    } else {
        return Err("the token is neither 'enroll:UID:TOKEN' nor 'node:UID:CRED'".into());
    };
    let Some((image_sha, name)) = node_image(app, uid) else {
        return Err(format!("node {uid} boots no image"));
    };
    if image_sha != sha256 {
        return Err(format!("{name} does not boot this image"));
    }
    let who = format!("node {uid}");
    if enrolling {
        app.enroll
            .check_token(uid, proof, peer, false)
            .map(|()| who)
            .map_err(|e| format!("{name}: {e}"))
    } else if super::verify(app, uid, proof).await {
        Ok(who)
    } else {
        Err(format!("{name}: the node credential is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_proofs_name_the_file_and_the_time() {
        let t = peer_fetch_token(b"secret", "abc");
        let rest = t.strip_prefix("head:").unwrap();
        let now = now_secs();
        assert!(peer_fetch_ok(b"secret", "abc", rest, now));
        assert!(peer_fetch_ok(
            b"secret",
            "abc",
            rest,
            now + PEER_SKEW_SECS - 1
        ));
        assert!(!peer_fetch_ok(
            b"secret",
            "abc",
            rest,
            now + PEER_SKEW_SECS + 5
        ));
        assert!(!peer_fetch_ok(b"secret", "abd", rest, now));
        assert!(!peer_fetch_ok(b"other", "abc", rest, now));
        assert!(!peer_fetch_ok(b"secret", "abc", "x:y", now));
        assert!(!peer_fetch_ok(b"secret", "abc", "", now));
    }
}

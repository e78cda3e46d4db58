//! Enrollment tokens of standalone nodes: servers wulf did not boot (`type standalone`), whose
//! `wulf-agent --standalone` enrolls once and keeps its credential on disk.
//!
//! `POST /api/v1/node/enroll-token` (admin) issues one: 32 random bytes, printed once as
//! `UID.SECRET` (the agent learns its node UID from it). Only the SHA-256 of the secret is
//! stored, at `/wulf/enroll-token/UID` with its expiry, so any head accepts it. The
//! enrollment at `POST /api/v1/node/enroll` consumes it in the same store transaction that
//! stores the node's nonce: a token enrolls once, whichever head it is presented to.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wulf_model::Kind;
use wulf_store::{Expect, StoreError, Txn};

use super::{credential, nonce_key};
use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::web::{read_json, ApiErr};

/// Store keys of standalone enrollment tokens: `/wulf/enroll-token/{uid}`.
pub const PREFIX: &str = "/wulf/enroll-token/";
/// How long a standalone enrollment token is good for unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a token may be good for.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The node type these tokens are for.
pub const TYPE: &str = "standalone";

/// `POST /api/v1/node/enroll-token` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The node's name or UID.
    pub node: String,
    /// Seconds the token is good for (default 24 h).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Its answer: the token, shown once.
#[derive(Debug, Serialize)]
pub struct TokenReply {
    pub node: String,
    pub uid: String,
    pub token: String,
    /// Unix seconds.
    pub expires: u64,
}

/// What is stored: never the token itself.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    sha256: String,
    expires: u64,
}

/// Why a standalone token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no enrollment token was issued for this node, or it was used already (issue one: wulf node -i NODE enroll-token)")]
    None,
    #[error("the enrollment token is not this node's")]
    Wrong,
    #[error("the enrollment token expired (issue a new one: wulf node -i NODE enroll-token)")]
    Expired,
    #[error("the enrollment token was used already (each enrolls once; issue a new one: wulf node -i NODE enroll-token)")]
    Used,
}

fn key(uid: &str) -> String {
    format!("{PREFIX}{uid}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The token as handed out: `UID.SECRET`.
pub fn render(uid: &str, secret: &str) -> String {
    format!("{uid}.{secret}")
}

/// The secret part of `token` (the agent sends it whole or just the secret).
fn secret_of<'a>(uid: &str, token: &'a str) -> &'a str {
    token
        .strip_prefix(uid)
        .and_then(|t| t.strip_prefix('.'))
        .unwrap_or(token)
}

/// Issue a fresh token for node `uid` (replacing any earlier one); (token, expiry).
pub async fn issue(app: &App, uid: &str, ttl: Duration) -> Result<(String, u64), StoreError> {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let expires = now() + ttl.as_secs();
    let stored = Stored {
        sha256: digest(&secret),
        expires,
    };
    let value = serde_json::to_vec(&stored).map_err(|e| StoreError::Invalid(e.to_string()))?;
    app.store.put(&key(uid), value, Expect::Any).await?;
    Ok((render(uid, &secret), expires))
}

/// Check `token` for standalone node `uid` and, when good, consume it and store a fresh nonce
/// in one transaction; the node's new credential. Nothing changes on a refusal.
pub async fn enroll(
    app: &App,
    uid: &str,
    token: &str,
) -> Result<Result<String, Refusal>, StoreError> {
    let Some(kv) = app.store.get(&key(uid)).await? else {
        return Ok(Err(Refusal::None));
    };
    let Ok(stored) = serde_json::from_slice::<Stored>(&kv.value) else {
        return Ok(Err(Refusal::None));
    };
    let got = digest(secret_of(uid, token));
    if !bool::from(got.as_bytes().ct_eq(stored.sha256.as_bytes())) {
        return Ok(Err(Refusal::Wrong));
    }
    if now() > stored.expires {
        return Ok(Err(Refusal::Expired));
    }
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let txn = Txn::new()
        .when(key(uid), Expect::ModRevision(kv.mod_revision))
        .delete(key(uid))
        .put(nonce_key(uid), nonce.clone().into_bytes());
    let r = app.store.txn(txn).await?;
    if !r.succeeded {
        // Another enrollment consumed it first.
        return Ok(Err(Refusal::Used));
    }
    app.enroll.remember(uid, Some(nonce.clone()), true);
    Ok(Ok(credential(&app.node_secret, uid, &nonce)))
}

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/node/enroll-token", post(issue_route))
}

async fn issue_route(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<Json<TokenReply>, ApiErr> {
    let req: TokenRequest = serde_json::from_value(read_json(&app, body).await?).map_err(|e| {
        ApiErr::bad(format!(
            "malformed request (want {{\"node\": NAME, \"ttl_secs\": N}}): {e}"
        ))
    })?;
    let ttl = match req.ttl_secs {
        None => DEFAULT_TTL,
        Some(s) if s == 0 || s > MAX_TTL.as_secs() => {
            return Err(ApiErr::bad(format!(
                "ttl_secs {s} is out of range: 1 to {} (30 days)",
                MAX_TTL.as_secs()
            )))
        }
        Some(s) => Duration::from_secs(s),
    };
    let (uid, name, node_type) = {
        let st = app.cache.read();
        let e = st
            .get(Kind::Node, &req.node)
            .or_else(|| st.by_name(Kind::Node, &req.node));
        let Some(n) = e.and_then(|e| e.obj.as_node()) else {
            return Err(ApiErr::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no node {}", req.node),
            ));
        };
        (n.uid.clone(), n.name.clone(), n.node_type.clone())
    };
    if node_type != TYPE {
        return Err(ApiErr::bad(format!(
            "{name} is of type {node_type}: enrollment tokens are for nodes of type {TYPE} \
             (nodes wulf boots get theirs in the boot script)"
        )));
    }
    let (token, expires) = issue(&app, &uid, ttl).await.map_err(|e| ApiErr::from(&e))?;
    tracing::info!(target: "audit", account = %who.name, source = %who.source, node = %name, tag.nodes = %name, "issued an enrollment token for standalone node {name}, good for {} s", ttl.as_secs());
    Ok(Json(TokenReply {
        node: name,
        uid,
        token,
        expires,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_prefix_is_optional() {
        assert_eq!(secret_of("u1", "u1.abc"), "abc");
        assert_eq!(secret_of("u1", "abc"), "abc");
        assert_eq!(secret_of("u1", "u2.abc"), "u2.abc");
        assert_eq!(digest("x").len(), 64);
    }
}

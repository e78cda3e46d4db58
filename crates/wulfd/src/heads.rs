//! Head registration: every head keeps a record of itself (`/wulf/heads/<name>`, which stays
//! after it stops) and a liveness key bound to a lease (`/wulf/alive/<name>`, which vanishes
//! when the head stops renewing it). `wulf head ls` shows each known head up or down; a down
//! head's record can be removed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wulf_store::{Expect, LeaseId, Op, Store, StoreError, Txn};

pub const HEADS_PREFIX: &str = "/wulf/heads/";
pub const ALIVE_PREFIX: &str = "/wulf/alive/";

/// How long a head stays "up" after its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a head renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// What a head says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadRecord {
    pub name: String,
    /// Base URLs of its API.
    pub urls: Vec<String>,
    pub version: String,
    /// Unix time (s) it last started.
    pub started: f64,
}

/// A head as `GET /api/v1/head` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadView {
    #[serde(flatten)]
    pub record: HeadRecord,
    /// `up` (its lease is alive) or `down`.
    pub state: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("a head named '{0}' is already running (its lease is alive); give this one another head_name in the config file")]
    AlreadyRunning(String),
    #[error("head '{0}' is up; stop it before removing it")]
    StillUp(String),
    #[error("no head named '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Register this head: write its record and its leased liveness key. Fails if a live head of
/// the same name holds the liveness key.
pub async fn register(store: &dyn Store, rec: &HeadRecord) -> Result<LeaseId, HeadError> {
    let lease = store.lease_grant(LEASE_TTL).await?;
    let value = serde_json::to_vec(rec).map_err(|e| StoreError::Backend(e.to_string()))?;
    let alive = format!("{ALIVE_PREFIX}{}", rec.name);
    let txn = Txn {
        compares: vec![wulf_store::Compare {
            key: alive.clone(),
            expect: Expect::Absent,
        }],
        ops: vec![
            Op::Put {
                key: format!("{HEADS_PREFIX}{}", rec.name),
                value: value.clone(),
                lease: None,
            },
            Op::Put {
                key: alive,
                value,
                lease: Some(lease),
            },
        ],
    };
    if store.txn(txn).await?.succeeded {
        Ok(lease)
    } else {
        let _ = store.lease_revoke(lease).await;
        Err(HeadError::AlreadyRunning(rec.name.clone()))
    }
}

/// Register, coping with a liveness key left by this head's own previous run: with the
/// embedded store only one process can have the database open, so such a key is stale and is
/// taken over at once; with a shared store it may be another live head of the same name, so
/// wait for its lease to run out (a restart right after a crash) and give up after that.
pub async fn register_or_wait(store: &dyn Store, rec: &HeadRecord) -> Result<LeaseId, HeadError> {
    let deadline = tokio::time::Instant::now() + LEASE_TTL + Duration::from_secs(2);
    loop {
        match register(store, rec).await {
            Err(HeadError::AlreadyRunning(name)) => {
                let alive = format!("{ALIVE_PREFIX}{name}");
                if !store.shared() {
                    if let Some(lease) = store.get(&alive).await?.and_then(|kv| kv.lease) {
                        tracing::info!(head = %name, "taking over the liveness key of this head's previous run");
                        let _ = store.lease_revoke(lease).await;
                    }
                } else if tokio::time::Instant::now() >= deadline {
                    return Err(HeadError::AlreadyRunning(name));
                } else {
                    tracing::info!(head = %name, "a head of this name looks alive; waiting for its lease to run out");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            other => return other,
        }
    }
}

/// The heads that are up, as last read (refreshed with every lease renewal).
pub type LiveHeads = Arc<std::sync::RwLock<Vec<HeadRecord>>>;

/// Read which heads are up.
async fn live(store: &dyn Store) -> Result<Vec<HeadRecord>, StoreError> {
    let (alive, _) = store.list(ALIVE_PREFIX).await?;
    Ok(alive
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

/// Keep the lease alive until `cancel`; then revoke it, so the head shows down at once. If the
/// lease is lost (the store was unreachable for longer than its TTL), register again.
pub async fn keep_alive(
    store: Arc<dyn Store>,
    rec: HeadRecord,
    mut lease: LeaseId,
    heads: LiveHeads,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match store.lease_keep_alive(lease).await {
            Ok(_) => {}
            Err(StoreError::LeaseNotFound(_)) => {
                tracing::warn!(head = %rec.name, "this head's lease expired; registering again");
                match register(store.as_ref(), &rec).await {
                    Ok(l) => lease = l,
                    Err(e) => tracing::warn!(error = %e, "cannot register this head again"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew this head's lease"),
        }
        if let Ok(l) = live(store.as_ref()).await {
            if let Ok(mut h) = heads.write() {
                *h = l;
            }
        }
    }
    if let Err(e) = store.lease_revoke(lease).await {
        tracing::warn!(error = %e, "cannot revoke this head's lease");
    }
}

/// Every known head, up or down, by name.
pub async fn list(store: &dyn Store) -> Result<Vec<HeadView>, StoreError> {
    let (records, _) = store.list(HEADS_PREFIX).await?;
    let (alive, _) = store.list(ALIVE_PREFIX).await?;
    let alive: std::collections::HashSet<&str> = alive
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(ALIVE_PREFIX))
        .collect();
    let mut out: Vec<HeadView> = records
        .iter()
        .filter_map(|kv| {
            let record: HeadRecord = serde_json::from_slice(&kv.value).ok()?;
            let up = kv
                .key
                .strip_prefix(HEADS_PREFIX)
                .is_some_and(|n| alive.contains(n));
            Some(HeadView {
                record,
                state: if up { "up" } else { "down" }.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    Ok(out)
}

/// Remove a down head's record.
pub async fn remove(store: &dyn Store, name: &str) -> Result<(), HeadError> {
    remove_all(store, &[name]).await
}

/// Remove the records of down heads, all or none: one transaction, so a list with an unknown
/// head or one that is up in it removes nothing. The error names the first such head.
pub async fn remove_all(store: &dyn Store, names: &[&str]) -> Result<(), HeadError> {
    let mut unique: Vec<&str> = Vec::with_capacity(names.len());
    for n in names {
        if !unique.contains(n) {
            unique.push(n);
        }
    }
    let mut txn = Txn::default();
    for name in &unique {
        let key = format!("{HEADS_PREFIX}{name}");
        txn.compares.push(wulf_store::Compare {
            key: format!("{ALIVE_PREFIX}{name}"),
            expect: Expect::Absent,
        });
        txn.compares.push(wulf_store::Compare {
            key: key.clone(),
            expect: Expect::Present,
        });
        txn.ops.push(Op::Delete { key });
    }
    if store.txn(txn).await?.succeeded {
        return Ok(());
    }
    for name in unique {
        if store.get(&format!("{HEADS_PREFIX}{name}")).await?.is_none() {
            return Err(HeadError::NotFound(name.to_string()));
        }
        if store.get(&format!("{ALIVE_PREFIX}{name}")).await?.is_some() {
            return Err(HeadError::StillUp(name.to_string()));
        }
    }
    // Each was there and down when checked again: it changed meanwhile.
    Err(HeadError::Store(StoreError::Conflict {
        key: HEADS_PREFIX.to_string(),
    }))
}

/// The URLs other machines reach this head's API at (https://): `[boot] url` if set, else
/// each non-loopback IPv4 address with the API port (or the listen address if it is specific).
pub fn urls(listen: std::net::SocketAddr, boot_url: Option<&str>) -> Vec<String> {
    if let Some(u) = boot_url {
        return vec![crate::boot::api_base(u.trim_end_matches('/'))];
    }
    if !listen.ip().is_unspecified() {
        return vec![format!("https://{listen}")];
    }
    let mut out: Vec<String> = crate::netif::ipv4_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.addr.is_loopback())
        .map(|a| format!("https://{}:{}", a.addr, listen.port()))
        .collect();
    out.dedup();
    if out.is_empty() {
        out.push(format!("https://127.0.0.1:{}", listen.port()));
    }
    out
}

/// `GET|DELETE /api/v1/head`.
pub fn routes() -> axum::Router<std::sync::Arc<crate::app::App>> {
    axum::Router::new().route(
        "/api/v1/head",
        axum::routing::get(head_list).delete(head_remove),
    )
}

/// `GET /api/v1/head`: every known head, up or down.
async fn head_list(
    axum::extract::State(app): crate::app::AppState,
) -> Result<axum::Json<Vec<crate::heads::HeadView>>, crate::web::ApiErr> {
    Ok(axum::Json(crate::heads::list(app.store.as_ref()).await?))
}

/// `DELETE /api/v1/head?ids=NAME,…`: remove down heads' records.
async fn head_remove(
    axum::extract::State(app): crate::app::AppState,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<wulf_api::Deleted>, crate::web::ApiErr> {
    use crate::heads::HeadError;
    let names: Vec<&str> = q
        .get("ids")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(crate::web::ApiErr::bad("say which heads: ids=NAME[,NAME…]"));
    }
    match crate::heads::remove_all(app.store.as_ref(), &names).await {
        Ok(()) => {}
        Err(HeadError::NotFound(n)) => {
            return Err(crate::web::ApiErr::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no head named '{n}'"),
            ))
        }
        Err(e @ (HeadError::StillUp(_) | HeadError::AlreadyRunning(_))) => {
            return Err(crate::web::ApiErr::new(
                axum::http::StatusCode::CONFLICT,
                e.to_string(),
            ))
        }
        Err(HeadError::Store(e)) => return Err(e.into()),
    }
    let mut deleted: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !deleted.iter().any(|d| d == name) {
            tracing::info!(target: "audit", account = %who.name, source = %who.source, head = %name, "removed a down head");
            deleted.push(name.to_string());
        }
    }
    Ok(axum::Json(wulf_api::Deleted { deleted }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> HeadRecord {
        HeadRecord {
            name: name.into(),
            urls: vec!["http://10.0.0.1:8740".into()],
            version: "0".into(),
            started: 1.0,
        }
    }

    #[tokio::test]
    async fn heads_register_once_and_go_down_when_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = wulf_store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        let lease = register(store.as_ref(), &rec("h1")).await.unwrap();
        assert!(matches!(
            register(store.as_ref(), &rec("h1")).await,
            Err(HeadError::AlreadyRunning(_))
        ));
        register(store.as_ref(), &rec("h2")).await.unwrap();
        let l = list(store.as_ref()).await.unwrap();
        assert_eq!(l.len(), 2);
        assert!(l.iter().all(|h| h.state == "up"));
        assert!(matches!(
            remove(store.as_ref(), "h1").await,
            Err(HeadError::StillUp(_))
        ));
        store.lease_revoke(lease).await.unwrap();
        let l = list(store.as_ref()).await.unwrap();
        assert_eq!(l[0].state, "down");
        assert_eq!(l[1].state, "up");
        remove(store.as_ref(), "h1").await.unwrap();
        assert!(matches!(
            remove(store.as_ref(), "h1").await,
            Err(HeadError::NotFound(_))
        ));
        assert_eq!(list(store.as_ref()).await.unwrap().len(), 1);
        // A stopped head may start again under its name; a crashed one too (embedded: the
        // stale key is taken over at once).
        register(store.as_ref(), &rec("h1")).await.unwrap();
        let t = std::time::Instant::now();
        register_or_wait(store.as_ref(), &rec("h1")).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn removing_several_heads_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = wulf_store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        for n in ["down1", "down2", "up"] {
            let lease = register(store.as_ref(), &rec(n)).await.unwrap();
            if n != "up" {
                store.lease_revoke(lease).await.unwrap();
            }
        }
        assert!(matches!(
            remove_all(store.as_ref(), &["down1", "nosuch"]).await,
            Err(HeadError::NotFound(n)) if n == "nosuch"
        ));
        assert!(matches!(
            remove_all(store.as_ref(), &["down1", "up", "down2"]).await,
            Err(HeadError::StillUp(n)) if n == "up"
        ));
        assert_eq!(
            list(store.as_ref()).await.unwrap().len(),
            3,
            "nothing removed"
        );
        remove_all(store.as_ref(), &["down2", "down1", "down2"])
            .await
            .unwrap();
        let left: Vec<String> = list(store.as_ref())
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.record.name)
            .collect();
        assert_eq!(left, ["up"]);
    }
}

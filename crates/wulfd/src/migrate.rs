//! `wulfd migrate-store --to etcd://…`: copy the embedded database into an empty etcd.
//!
//! Everything under `/wulf/` is copied (objects, uniqueness keys, secrets, node status, head
//! records) except keys bound to a lease (a head's liveness key), which belong to a running
//! head. Writes go in transactions small enough for etcd's default `--max-txn-ops` (128).
//! The target must hold no `/wulf/` key: a half-merged database is worse than none.

use anyhow::Context;
use wulf_store::{Op, Store, Txn};

use crate::config::{Config, StoreUrl};

const PREFIX: &str = "/wulf/";
/// Writes per transaction (etcd's default limit is 128 operations).
const CHUNK: usize = 100;

pub async fn run(cfg: &Config, to: &str) -> anyhow::Result<()> {
    let target_url: StoreUrl = to.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if target_url == StoreUrl::Embedded {
        anyhow::bail!("--to must name an etcd store (etcd://host:port,…)");
    }
    let data_dir = cfg.data_dir.canonicalize().unwrap_or(cfg.data_dir.clone());
    if !data_dir.join("wulf.redb").exists() {
        anyhow::bail!("no embedded database in {}", data_dir.display());
    }
    let source_cfg = Config {
        store: StoreUrl::Embedded,
        ..cfg.clone()
    };
    let source = crate::open_store(&source_cfg, &data_dir)
        .await
        .context("cannot open the embedded database (is wulfd still running on it?)")?;
    let target_cfg = Config {
        store: target_url,
        ..cfg.clone()
    };
    let target = crate::open_store(&target_cfg, &data_dir).await?;
    copy(source.as_ref(), target.as_ref()).await
}

/// Copy every `/wulf/` key without a lease from `source` into `target`, which must have none.
pub async fn copy(source: &dyn Store, target: &dyn Store) -> anyhow::Result<()> {
    let (existing, _) = target.list(PREFIX).await?;
    if !existing.is_empty() {
        anyhow::bail!(
            "the target store already holds {} wulf keys (e.g. {}); migrate only into an empty store",
            existing.len(),
            existing[0].key
        );
    }
    let (kvs, revision) = source.list(PREFIX).await?;
    let keep: Vec<_> = kvs.into_iter().filter(|kv| kv.lease.is_none()).collect();
    let mut copied = 0;
    for chunk in keep.chunks(CHUNK) {
        let txn = Txn {
            compares: Vec::new(),
            ops: chunk
                .iter()
                .map(|kv| Op::Put {
                    key: kv.key.clone(),
                    value: kv.value.clone(),
                    lease: None,
                })
                .collect(),
        };
        target
            .txn(txn)
            .await
            .with_context(|| format!("copy failed after {copied} keys"))?;
        copied += chunk.len();
    }
    let (after, _) = target.list(PREFIX).await?;
    if after.len() != copied {
        anyhow::bail!(
            "the target holds {} wulf keys after copying {copied}: was it written to meanwhile?",
            after.len()
        );
    }
    println!(
        "copied {copied} keys (embedded store at revision {revision}) to {}",
        target.backend()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wulf_store::Expect;

    #[tokio::test]
    async fn copies_everything_but_leased_keys_into_an_empty_store() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = wulf_store::EmbeddedStore::open(&d1.path().join("a.redb")).unwrap();
        let b = wulf_store::EmbeddedStore::open(&d2.path().join("b.redb")).unwrap();
        for i in 0..250 {
            a.put(&format!("/wulf/obj/node/{i}"), vec![b'x'; 10], Expect::Any)
                .await
                .unwrap();
        }
        a.put("/other/key", b"y".to_vec(), Expect::Any)
            .await
            .unwrap();
        let lease = a.lease_grant(Duration::from_secs(60)).await.unwrap();
        a.txn(Txn::new().put_with_lease("/wulf/alive/h1", b"z".to_vec(), lease))
            .await
            .unwrap();
        copy(a.as_ref(), b.as_ref()).await.unwrap();
        let (kvs, _) = b.list("/").await.unwrap();
        assert_eq!(kvs.len(), 250);
        assert!(kvs.iter().all(|kv| kv.key.starts_with("/wulf/obj/node/")));
        // Not twice.
        let e = copy(a.as_ref(), b.as_ref()).await.unwrap_err();
        assert!(e.to_string().contains("already holds 250"), "{e}");
    }
}

//! API authentication: bearer tokens compared in constant time. On first start the head
//! writes an admin token to `DATA/admin.token`, readable only by its owner.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use subtle::ConstantTimeEq;

pub mod node;
pub use node::node_uid;

pub const TOKEN_FILE: &str = "admin.token";

/// The admin tokens this head accepts.
pub struct Tokens {
    admin: Vec<Vec<u8>>,
}

impl Tokens {
    pub fn new(admin: Vec<String>) -> Tokens {
        Tokens {
            admin: admin.into_iter().map(String::into_bytes).collect(),
        }
    }

    /// True when `presented` equals one of the admin tokens. Each comparison takes the same
    /// time whatever the bytes.
    pub fn is_admin(&self, presented: &str) -> bool {
        let p = presented.as_bytes();
        let mut ok = subtle::Choice::from(0);
        for t in &self.admin {
            if t.len() == p.len() {
                ok |= t.as_slice().ct_eq(p);
            }
        }
        bool::from(ok)
    }
}

/// Store key of the cluster's admin token, shared by every head.
const ADMIN_TOKEN_KEY: &str = "/wulf/secret/admin-token";

/// The cluster's admin token: the one in the store if there is one (another head made it),
/// else this head's `DATA/admin.token` (made if missing), which then goes into the store. The
/// local file always ends up holding the cluster's token, so the CLI on any head finds it.
pub async fn cluster_admin_token(
    store: &dyn wulf_store::Store,
    data_dir: &Path,
) -> anyhow::Result<String> {
    use wulf_store::{Expect, StoreError};
    let stored = store.get(ADMIN_TOKEN_KEY).await?;
    let token = match stored {
        Some(kv) => String::from_utf8(kv.value)
            .map_err(|_| anyhow::anyhow!("the admin token in the store is not text"))?,
        None => {
            let local = ensure_admin_token(data_dir)?;
            match store
                .put(ADMIN_TOKEN_KEY, local.clone().into_bytes(), Expect::Absent)
                .await
            {
                Ok(_) => local,
                // Another head stored its token first: use that one.
                Err(StoreError::Conflict { .. }) => store
                    .get(ADMIN_TOKEN_KEY)
                    .await?
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                    .ok_or_else(|| anyhow::anyhow!("the admin token vanished from the store"))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let token = token.trim().to_string();
    let path = data_dir.join(TOKEN_FILE);
    if std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .ok()
        != Some(token.clone())
    {
        write_token_file(data_dir, &token)?;
        tracing::info!(target: "audit", path = %path.display(), "wrote the cluster's admin token");
    }
    Ok(token)
}

/// Read the admin token from `DATA/admin.token`, creating it (mode 0600) if missing.
pub fn ensure_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{} is empty; delete it and restart to make a new token",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_token_file(data_dir, &token)?;
    tracing::info!(target: "audit", path = %path.display(), "created the admin token");
    Ok(token)
}

/// Write `DATA/admin.token` (mode 0600) atomically.
fn write_token_file(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    let path = data_dir.join(TOKEN_FILE);
    let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        let t = Tokens::new(vec!["abc123".into()]);
        assert!(t.is_admin("abc123"));
        assert!(!t.is_admin("abc124"));
        assert!(!t.is_admin("abc12"));
        assert!(!t.is_admin(""));
    }

    #[tokio::test]
    async fn heads_share_the_cluster_token() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = wulf_store::EmbeddedStore::open(&store_dir.path().join("s.redb")).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Head A was set up before tokens were shared: its file's token is adopted.
        let old = ensure_admin_token(a.path()).unwrap();
        let ta = cluster_admin_token(store.as_ref(), a.path()).await.unwrap();
        assert_eq!(ta, old);
        // Head B gets the same token, written to its own file.
        let tb = cluster_admin_token(store.as_ref(), b.path()).await.unwrap();
        assert_eq!(tb, ta);
        let file = std::fs::read_to_string(b.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(file.trim(), ta);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let a = ensure_admin_token(d.path()).unwrap();
        let b = ensure_admin_token(d.path()).unwrap();
        assert_eq!(a, b);
        let mode = std::fs::metadata(d.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

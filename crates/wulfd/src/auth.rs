//! API authentication: bearer tokens compared in constant time. On first start the head
//! writes an admin token to `DATA/admin.token`, readable only by its owner.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use subtle::ConstantTimeEq;

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
    tracing::info!(target: "audit", path = %path.display(), "created the admin token");
    Ok(token)
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

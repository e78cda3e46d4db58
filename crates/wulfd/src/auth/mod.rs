//! Who may call what. Every request passes [`guard`], which looks its route up in
//! [`table::RULES`] and, for account routes, checks the bearer token: the bootstrap admin
//! token (`DATA/admin.token`, readable only by its owner, role admin as account `root`) or a
//! signed access token from `wulf login` ([`token`]), whose account, generation and session
//! must still be live. Node credentials are checked by the node routes themselves ([`node`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use subtle::ConstantTimeEq;

pub mod accounts;
pub mod node;
pub mod session;
pub mod table;
pub mod token;
pub use node::node_uid;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wulf_api::auth::Role;
use wulf_model::Kind;

use crate::app::AppState;
use crate::web::{bearer, ApiErr};

/// The account name the bootstrap token acts as.
pub const BOOTSTRAP_ACCOUNT: &str = "root";
/// How long a head trusts that a session it saw is still live before asking the store again
/// (a logout on another head reaches this one within this time).
const SESSION_RECHECK: Duration = Duration::from_secs(60);

/// Who is calling: put in the request's extensions by [`guard`] for account routes.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// "bootstrap" or "token".
    pub via: &'static str,
    pub expires: Option<u64>,
    pub session: Option<String>,
    /// The peer's address.
    pub source: String,
}

/// The head's authentication state.
pub struct Auth {
    bootstrap: Tokens,
    /// The cluster's token signing key (shared by every head through the store).
    key: Vec<u8>,
    pub access_secs: u64,
    pub refresh_secs: u64,
    /// Sessions this head has checked lately: live or not, and when.
    sessions: Mutex<HashMap<String, (bool, Instant)>>,
}

/// Store key of the token signing key.
const TOKEN_KEY: &str = "/wulf/secret/token-key";
/// Store keys of login sessions: `/wulf/session/{id}`.
pub const SESSION_PREFIX: &str = "/wulf/session/";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
    /// Read the cluster's token key, making it on a new cluster (safe to race).
    pub async fn load(
        store: &dyn wulf_store::Store,
        bootstrap: Vec<String>,
        cfg: &crate::config::AuthSection,
    ) -> anyhow::Result<Auth> {
        use wulf_store::{Expect, StoreError};
        let key = match store.get(TOKEN_KEY).await? {
            Some(kv) => kv.value,
            None => {
                let fresh = rand::random::<[u8; 32]>().to_vec();
                match store.put(TOKEN_KEY, fresh.clone(), Expect::Absent).await {
                    Ok(_) => fresh,
                    Err(StoreError::Conflict { .. }) => store
                        .get(TOKEN_KEY)
                        .await?
                        .map(|kv| kv.value)
                        .ok_or_else(|| anyhow::anyhow!("the token key vanished from the store"))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        anyhow::ensure!(key.len() >= 32, "the token key in the store is too short");
        Ok(Auth {
            bootstrap: Tokens::new(bootstrap),
            key,
            access_secs: cfg.access_secs,
            refresh_secs: cfg.refresh_secs,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// True when `token` is the bootstrap admin token.
    pub fn is_bootstrap(&self, token: &str) -> bool {
        self.bootstrap.is_admin(token)
    }

    /// Whether a session is live: asked of the store unless this head checked lately.
    pub async fn session_live(
        &self,
        store: &dyn wulf_store::Store,
        session: &str,
        fresh: bool,
    ) -> Result<bool, ApiErr> {
        if !fresh {
            if let Some((live, at)) = self
                .sessions
                .lock()
                .ok()
                .and_then(|m| m.get(session).copied())
            {
                if at.elapsed() < SESSION_RECHECK {
                    return Ok(live);
                }
            }
        }
        let live = store
            .get(&format!("{SESSION_PREFIX}{session}"))
            .await?
            .is_some();
        if let Ok(mut m) = self.sessions.lock() {
            if m.len() > 100_000 {
                m.retain(|_, (_, at)| at.elapsed() < SESSION_RECHECK);
            }
            m.insert(session.to_string(), (live, Instant::now()));
        }
        Ok(live)
    }

    /// Forget what this head knew about a session (it just ended here).
    pub fn forget_session(&self, session: &str) {
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(session.to_string(), (false, Instant::now()));
        }
    }
}

fn unauthorized(msg: impl Into<String>) -> ApiErr {
    ApiErr::new(StatusCode::UNAUTHORIZED, msg)
}

/// Who presents `headers`' bearer token, or why nobody valid does.
pub async fn authenticate(
    app: &crate::app::App,
    headers: &axum::http::HeaderMap,
    source: String,
) -> Result<Principal, ApiErr> {
    let Some(token) = bearer(headers) else {
        return Err(unauthorized(
            "authentication required: log in (wulf login) or send 'Authorization: Bearer TOKEN'",
        ));
    };
    if app.auth.is_bootstrap(token) {
        return Ok(Principal {
            name: BOOTSTRAP_ACCOUNT.to_string(),
            role: Role::Admin,
            via: "bootstrap",
            expires: None,
            session: None,
            source,
        });
    }
    if wulf_api::status::parse_node_token(token).is_some() {
        tracing::warn!(target: "audit", %source, "refused a node credential on an account route");
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            "a node credential is only good for the node routes",
        ));
    }
    if !token::is_signed_token(token) {
        tracing::warn!(target: "audit", %source, "refused a request with a wrong token");
        return Err(unauthorized("the token is not valid"));
    }
    let claims = token::verify(app.auth.key(), token, now_secs()).map_err(|e| {
        tracing::warn!(target: "audit", %source, "refused a token: {e}");
        unauthorized(match e {
            token::TokenError::Expired => {
                "the token expired: log in again (wulf login), or refresh it".to_string()
            }
            e => e.to_string(),
        })
    })?;
    if claims.usage != token::Use::Access {
        return Err(unauthorized(
            "a refresh token is only good at /api/v1/login/refresh",
        ));
    }
    let role = {
        let st = app.cache.read();
        let account = st
            .get(Kind::Admin, &claims.sub)
            .and_then(|e| match &*e.obj {
                crate::objects::AnyObj::Admin(a) => Some(a.clone()),
                _ => None,
            });
        let Some(account) = account else {
            tracing::warn!(target: "audit", account = %claims.name, %source, "refused a token of a deleted account");
            return Err(unauthorized(format!(
                "account '{}' no longer exists",
                claims.name
            )));
        };
        if account.token_generation != claims.generation {
            tracing::warn!(target: "audit", account = %claims.name, %source, "refused a revoked token");
            return Err(unauthorized(
                "the token was revoked (password or role changed, or wulf admin revoke): log in again",
            ));
        }
        account.role.parse::<Role>().map_err(|e| {
            ApiErr::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("account {}: {e}", account.name),
            )
        })?
    };
    if !app
        .auth
        .session_live(app.store.as_ref(), &claims.session, false)
        .await?
    {
        return Err(unauthorized("the session ended (logged out): log in again"));
    }
    Ok(Principal {
        name: claims.name,
        role,
        via: "token",
        expires: Some(claims.expires),
        session: Some(claims.session),
        source,
    })
}

/// The middleware every route passes: the route's rule from [`table::RULES`], and for account
/// routes a valid token with the role the rule needs. Routes with no rule are refused.
pub async fn guard(State(app): AppState, mut req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        // No route matched: the fallback answers 404.
        return next.run(req).await;
    };
    let Some(rule) = table::lookup(req.method(), &path) else {
        tracing::error!(method = %req.method(), %path, "refused: the route has no row in the access table");
        return ApiErr::new(StatusCode::FORBIDDEN, "this route has no access rule").into_response();
    };
    let need = match rule.access {
        table::Access::Firmware | table::Access::Public | table::Access::Node => {
            return next.run(req).await
        }
        table::Access::Account(role) => role,
    };
    let source = crate::web::source(req.extensions());
    let p = match authenticate(&app, req.headers(), source).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if p.role < need {
        tracing::warn!(target: "audit", account = %p.name, source = %p.source, method = %req.method(), %path, "refused: role {} needs {need}", p.role);
        return ApiErr::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} has role {}; {} {} ({}) needs {need}",
                p.name, p.role, rule.method, rule.path, rule.what
            ),
        )
        .into_response();
    }
    let account = crate::log::access::Account(p.name.clone());
    req.extensions_mut().insert(p);
    let mut resp = next.run(req).await;
    // For the access log, outside this layer.
    resp.extensions_mut().insert(account);
    resp
}

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

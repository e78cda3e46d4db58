//! Accounts, roles and tokens as the API speaks them.
//!
//! | method | path | who | what |
//! | --- | --- | --- | --- |
//! | POST | `/login` | anyone | a name and password ([`LoginRequest`]) for tokens ([`TokenReply`]) |
//! | POST | `/login/refresh` | anyone | a refresh token ([`RefreshRequest`]) for a new access token |
//! | POST | `/logout` | any account | end the session of the token presented (its refresh token dies) |
//! | GET | `/whoami` | any account | the caller's account and role ([`WhoAmI`]) |
//! | POST | `/admin/revoke?ids=SEL` | admin | end every token of the accounts |
//!
//! Accounts themselves are objects of kind `admin` (`/api/v1/admin`): create and update take a
//! write-only `password` field that the head stores as an argon2id hash.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a caller may do, least to most. Each API route needs one (see `docs/security.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets.
    Viewer,
    /// Also acts on nodes: power, reboot, exec, orphan, status actions.
    Operator,
    /// Changes anything, accounts included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a role (viewer, operator, admin)"))
    }
}

/// `POST /api/v1/login`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("name", &self.name)
            .field("password", &"********")
            .finish()
    }
}

/// `POST /api/v1/login/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The answer to a login or a refresh. Times are Unix seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReply {
    pub name: String,
    pub role: Role,
    /// Sent as `Authorization: Bearer ACCESS_TOKEN`.
    pub access_token: String,
    pub access_expires: u64,
    /// Traded for a new access token at `/login/refresh`, until it expires or the session ends.
    pub refresh_token: String,
    pub refresh_expires: u64,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The account; `root` for the bootstrap token in the head's data directory.
    pub name: String,
    pub role: Role,
    /// "token" (a login's access token) or "bootstrap" (the data directory's admin token).
    pub via: String,
    /// When the presented token expires (Unix seconds); none for the bootstrap token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

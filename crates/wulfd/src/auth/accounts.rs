//! Admin accounts (objects of kind `admin`): passwords in, hashes stored, hashes never out.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde_json::Value;
use wulf_api::UpdateRequest;
use wulf_model::{Admin, Kind};

use crate::app::App;
use crate::db::DbError;
use crate::objects::AnyObj;
use crate::web::ApiErr;

/// Shortest password an account may have.
pub const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// What listings show instead of a password hash.
pub const HASH_MASK: &str = "********";

fn check_password(p: &str) -> Result<(), ApiErr> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(field_err(format!(
            "a password needs at least {MIN_PASSWORD} characters"
        )));
    }
    if p.len() > MAX_PASSWORD {
        return Err(field_err(format!(
            "a password may have at most {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

fn field_err(msg: String) -> ApiErr {
    ApiErr::from(DbError::Invalid(wulf_model::ModelError::new(
        "password", msg,
    )))
}

/// The argon2id hash (PHC string) of `password`, computed off the async threads.
pub async fn hash(password: String) -> Result<String, ApiErr> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiErr::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiErr::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A hash to check against when the account does not exist, so an unknown name takes as long
/// as a wrong password.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no such account", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// True when `password` matches the account's stored hash (false for accounts without one).
pub async fn verify(stored: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match stored {
            Some(h) if !h.is_empty() => (h, true),
            _ => (dummy_hash().to_string(), false),
        };
        let ok = PasswordHash::new(&phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

/// Take the write-only `password` out of a create body and put its hash in; refuse the
/// fields only the head writes.
pub async fn prepare_create(docs: Vec<Value>) -> Result<Vec<Value>, ApiErr> {
    let mut out = Vec::with_capacity(docs.len());
    for mut d in docs {
        let Some(map) = d.as_object_mut() else {
            return Err(ApiErr::bad("expected a JSON object for each account"));
        };
        for f in ["password_hash", "token_generation"] {
            if map.contains_key(f) {
                return Err(ApiErr::from(DbError::Invalid(wulf_model::ModelError::new(
                    f,
                    "is set by the head and cannot be written",
                ))));
            }
        }
        match map.remove("password") {
            Some(Value::String(p)) => {
                check_password(&p)?;
                map.insert("password_hash".into(), Value::String(hash(p).await?));
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err(field_err("a password is a JSON string".into())),
        }
        out.push(d);
    }
    Ok(out)
}

/// `PATCH /api/v1/admin`: fields as for any object, plus a write-only `password`. A new
/// password or role ends the account's tokens (raises its token generation).
pub async fn update(
    app: &App,
    uids: &[String],
    mut req: UpdateRequest,
) -> Result<Vec<AnyObj>, ApiErr> {
    let password = match req.fields.remove("password") {
        Some(Value::String(p)) => {
            check_password(&p)?;
            Some(hash(p).await?)
        }
        None => None,
        Some(_) => return Err(field_err("a password is a JSON string".into())),
    };
    if password.is_none() || !req.is_empty() {
        crate::db::check_request(Kind::Admin, &req)?;
    }
    let fields = req.fields.clone();
    let objs = app
        .db
        .modify(Kind::Admin, uids, |json, old| {
            for (k, v) in &fields {
                json[k.as_str()] = v.clone();
            }
            let AnyObj::Admin(old) = old else {
                return Ok(());
            };
            let role_changed = json.get("role").and_then(Value::as_str) != Some(&old.role);
            if let Some(h) = &password {
                json["password_hash"] = Value::String(h.clone());
            }
            if password.is_some() || role_changed {
                json["token_generation"] = Value::from(old.token_generation + 1);
            }
            Ok(())
        })
        .await?;
    Ok(objs)
}

/// End every token of the accounts: raise their token generation.
pub async fn revoke(app: &App, uids: &[String]) -> Result<Vec<AnyObj>, ApiErr> {
    Ok(app
        .db
        .modify(Kind::Admin, uids, |json, old| {
            if let AnyObj::Admin(old) = old {
                json["token_generation"] = Value::from(old.token_generation + 1);
            }
            Ok(())
        })
        .await?)
}

/// A copy of an account fit to show: the hash masked.
pub fn masked(a: &Admin) -> Admin {
    let mut a = a.clone();
    if !a.password_hash.is_empty() {
        a.password_hash = HASH_MASK.to_string();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = hash("correct horse".into()).await.ok().unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(h.clone()), "correct horse".into()).await);
        assert!(!verify(Some(h.clone()), "correct horsf".into()).await);
        assert!(!verify(None, "correct horse".into()).await);
        assert!(!verify(Some(String::new()), "".into()).await);
        let h2 = hash("correct horse".into()).await.ok().unwrap();
        assert_ne!(h, h2, "salted");
    }

    #[tokio::test]
    async fn create_bodies_hash_and_refuse_server_fields() {
        let docs =
            vec![serde_json::json!({"name": "alice", "role": "admin", "password": "s3cret-pass"})];
        let out = prepare_create(docs).await.ok().unwrap();
        assert!(out[0].get("password").is_none());
        assert!(out[0]["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$"));
        for bad in [
            serde_json::json!({"name": "a", "password": "short"}),
            serde_json::json!({"name": "a", "password": 12345678}),
            serde_json::json!({"name": "a", "password_hash": "$argon2id$x"}),
            serde_json::json!({"name": "a", "token_generation": 0}),
        ] {
            assert!(prepare_create(vec![bad.clone()]).await.is_err(), "{bad}");
        }
    }
}

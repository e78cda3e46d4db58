//! Logging in and out: `/login`, `/login/refresh`, `/logout`, `/whoami`, `/admin/revoke`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use wulf_api::auth::{LoginRequest, RefreshRequest, Role, TokenReply, WhoAmI};
use wulf_model::{Admin, Kind};
use wulf_store::Expect;

use super::token::{self, Claims, Use};
use super::{now_secs, Principal, SESSION_PREFIX};
use crate::app::{App, AppState};
use crate::objects::AnyObj;
use crate::web::{read_json, selection, summarize, ApiErr};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/login/refresh", post(refresh))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/admin/revoke", post(revoke))
}

/// A login session in the store: ended by logout, or by its refresh token's expiry.
#[derive(Debug, Serialize, Deserialize)]
struct SessionRecord {
    account: String,
    name: String,
    expires: u64,
}

fn account_by_name(app: &App, name: &str) -> Option<Admin> {
    let st = app.cache.read();
    let found = st.objects(Kind::Admin).find_map(|o| match o {
        AnyObj::Admin(a) if a.name == name => Some(a.clone()),
        _ => None,
    });
    found
}

fn account_by_uid(app: &App, uid: &str) -> Option<Admin> {
    let st = app.cache.read();
    st.get(Kind::Admin, uid).and_then(|e| match &*e.obj {
        AnyObj::Admin(a) => Some(a.clone()),
        _ => None,
    })
}

fn tokens(app: &App, a: &Admin, session: &str, refresh: Option<(String, u64)>) -> TokenReply {
    let now = now_secs();
    let claims = |usage, expires| Claims {
        sub: a.uid.clone(),
        name: a.name.clone(),
        generation: a.token_generation,
        session: session.to_string(),
        usage,
        issued: now,
        expires,
    };
    let (refresh_token, refresh_expires) = refresh.unwrap_or_else(|| {
        let exp = now + app.auth.refresh_secs;
        (token::sign(app.auth.key(), &claims(Use::Refresh, exp)), exp)
    });
    // An access token never outlives its session.
    let access_expires = (now + app.auth.access_secs).min(refresh_expires);
    TokenReply {
        name: a.name.clone(),
        role: a.role.parse().unwrap_or(Role::Viewer),
        access_token: token::sign(app.auth.key(), &claims(Use::Access, access_expires)),
        access_expires,
        refresh_token,
        refresh_expires,
    }
}

async fn login(State(app): AppState, req: Request) -> Result<Json<TokenReply>, ApiErr> {
    let source = crate::web::source(req.extensions());
    let body: LoginRequest = serde_json::from_value(read_json(&app, req.into_body()).await?)
        .map_err(|e| ApiErr::bad(format!("malformed login request: {e}")))?;
    let account = account_by_name(&app, &body.name);
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    if !super::accounts::verify(stored, body.password).await {
        tracing::warn!(target: "audit", account = %body.name, %source, "login refused: wrong name or password");
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "wrong account name or password",
        ));
    }
    let Some(a) = account else {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "wrong account name or password",
        ));
    };
    let session = hex::encode(rand::random::<[u8; 16]>());
    let reply = tokens(&app, &a, &session, None);
    let record = SessionRecord {
        account: a.uid.clone(),
        name: a.name.clone(),
        expires: reply.refresh_expires,
    };
    app.store
        .put(
            &format!("{SESSION_PREFIX}{session}"),
            serde_json::to_vec(&record).unwrap_or_default(),
            Expect::Any,
        )
        .await?;
    tracing::info!(target: "audit", account = %a.name, role = %a.role, %source, "logged in");
    Ok(Json(reply))
}

async fn refresh(State(app): AppState, req: Request) -> Result<Json<TokenReply>, ApiErr> {
    let source = crate::web::source(req.extensions());
    let body: RefreshRequest = serde_json::from_value(read_json(&app, req.into_body()).await?)
        .map_err(|e| ApiErr::bad(format!("malformed refresh request: {e}")))?;
    let refused = |why: &str| {
        tracing::warn!(target: "audit", %source, "refresh refused: {why}");
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            format!("{why}: log in again (wulf login)"),
        )
    };
    let claims = token::verify(app.auth.key(), &body.refresh_token, now_secs())
        .map_err(|e| refused(&e.to_string()))?;
    if claims.usage != Use::Refresh {
        return Err(refused("that is not a refresh token"));
    }
    let Some(a) = account_by_uid(&app, &claims.sub) else {
        return Err(refused(&format!(
            "account '{}' no longer exists",
            claims.name
        )));
    };
    if a.token_generation != claims.generation {
        return Err(refused("the account's tokens were revoked"));
    }
    if !app
        .auth
        .session_live(app.store.as_ref(), &claims.session, true)
        .await?
    {
        return Err(refused("the session ended"));
    }
    let reply = tokens(
        &app,
        &a,
        &claims.session,
        Some((body.refresh_token, claims.expires)),
    );
    tracing::debug!(account = %a.name, %source, "refreshed an access token");
    Ok(Json(reply))
}

async fn logout(
    State(app): AppState,
    Extension(p): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let Some(session) = &p.session else {
        return Err(ApiErr::bad(
            "the bootstrap token has no session to end (it lives in the head's data directory)",
        ));
    };
    app.store
        .delete(&format!("{SESSION_PREFIX}{session}"), Expect::Any)
        .await?;
    app.auth.forget_session(session);
    tracing::info!(target: "audit", account = %p.name, source = %p.source, "logged out");
    Ok(Json(serde_json::json!({ "logged_out": p.name })))
}

async fn whoami(Extension(p): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: p.name,
        role: p.role,
        via: p.via.to_string(),
        expires: p.expires,
    })
}

async fn revoke(
    State(app): AppState,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
    _body: Body,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let uids = selection(&app.cache.read(), Kind::Admin, &q, false)?;
    let objs = super::accounts::revoke(&app, &uids).await?;
    let names: Vec<&str> = objs.iter().map(AnyObj::name).collect();
    tracing::info!(target: "audit", account = %p.name, source = %p.source, "revoked the tokens of {}", summarize(Kind::Admin, &names));
    Ok(Json(serde_json::json!({ "revoked": names })))
}

/// Delete the sessions whose refresh tokens have expired (run by the head that looks after
/// the store); returns how many went.
pub async fn sweep_expired(store: &dyn wulf_store::Store) -> Result<usize, wulf_store::StoreError> {
    let (kvs, _) = store.list(SESSION_PREFIX).await?;
    let now = now_secs();
    let mut removed = 0;
    for kv in kvs {
        let expired = serde_json::from_slice::<SessionRecord>(&kv.value)
            .map(|r| r.expires <= now)
            // Unreadable: nothing can use it.
            .unwrap_or(true);
        if expired {
            store.delete(&kv.key, Expect::Any).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

//! The REST API under `/api/v1` (see the `wulf-api` crate for the list of paths): each
//! service's routes, composed behind authentication, and the boot routes firmware fetches.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use wulf_api::Info;

use crate::app::{App, AppState};
use crate::web::{bearer, ApiErr};

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v1/info", get(info))
        .merge(crate::objects::routes::routes())
        .merge(crate::status::routes::routes())
        .merge(crate::dhcp::routes())
        .merge(crate::dns::routes())
        .merge(crate::heads::routes())
        .merge(crate::maint::routes())
        .merge(crate::exec::routes::routes())
        .merge(crate::power::routes())
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            authenticate,
        ));
    // Boot scripts and boot files are fetched by firmware, which has no token.
    Router::new()
        .merge(api)
        .merge(crate::boot::routes())
        // Agents poll for commands with their node token, checked by the handlers.
        .merge(crate::exec::routes::node_routes())
        .fallback(|| async { ApiErr::new(StatusCode::NOT_FOUND, "no such API path") })
        .with_state(app)
}

async fn authenticate(State(app): AppState, req: Request, next: Next) -> Response {
    // Nodes send their reports with their own credential, checked by the handler.
    if req.method() == axum::http::Method::POST && req.uri().path() == "/api/v1/node/status" {
        return next.run(req).await;
    }
    let presented = bearer(req.headers());
    match presented {
        Some(t) if app.tokens.is_admin(t) => next.run(req).await,
        Some(_) => {
            tracing::warn!(target: "audit", path = %req.uri().path(), "refused a request with a wrong token");
            ApiErr::new(StatusCode::UNAUTHORIZED, "the token is not valid").into_response()
        }
        None => ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send 'Authorization: Bearer TOKEN'",
        )
        .into_response(),
    }
}

async fn info(State(app): AppState) -> Result<axum::Json<Info>, ApiErr> {
    Ok(axum::Json(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        store: app.store.backend().to_string(),
        revision: app.store.revision().await?,
        head: app.head.clone(),
        store_url: app.cfg.store.shareable(),
    }))
}

//! The REST API under `/api/v1` (see the `wulf-api` crate for the list of paths): each
//! service's routes and the boot routes firmware fetches, composed behind the access guard
//! (`auth::guard`, which applies `auth/table.rs`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use wulf_api::Info;

use crate::app::{App, AppState};
use crate::web::ApiErr;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/info", get(info))
        .merge(crate::auth::session::routes())
        .merge(crate::objects::routes::routes())
        .merge(crate::status::routes::routes())
        .merge(crate::dhcp::routes())
        .merge(crate::dns::routes())
        .merge(crate::heads::routes())
        .merge(crate::maint::routes())
        .merge(crate::backup::routes())
        .merge(crate::import::routes())
        .merge(crate::exec::routes::routes())
        .merge(crate::power::routes())
        .merge(crate::replace::routes())
        .merge(crate::log::routes::routes())
        .merge(crate::enroll::standalone::routes())
        .layer(DefaultBodyLimit::disable())
        // Boot scripts and boot files are fetched by firmware, which has no token.
        .merge(crate::boot::routes())
        // Installers fetch their kickstart and repo files the same way.
        .merge(crate::kickstart::routes())
        // Agents poll for commands with their node token, checked by the handlers.
        .merge(crate::exec::routes::node_routes())
        // Booting nodes trade their enrollment token, checked by the handler.
        .merge(crate::enroll::routes::routes())
        .merge(crate::enroll::installed::routes())
        // Booting nodes ask where to get their image's pieces (the image's own check).
        .merge(crate::swarm::routes::routes())
        // The web page's static files (its data comes from the API above, behind a login).
        .merge(crate::gui::routes())
        // Every route above passes the access table (auth/table.rs).
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::guard,
        ))
        // Prometheus scrapes: the handler checks its caller ([metrics] public, token_file).
        .merge(crate::metrics::routes())
        // Plain HTTP reaches only /boot/ (firmware); the rest needs HTTPS.
        .layer(axum::middleware::from_fn(crate::tls::require_tls))
        // One access.log line per request, whatever answered it.
        .layer(axum::middleware::from_fn(crate::log::access::layer))
        .fallback(|| async { ApiErr::new(StatusCode::NOT_FOUND, "no such API path") })
        // Requests and latency per route (the fallback's as `unmatched`).
        .layer(axum::middleware::from_fn(crate::metrics::http::track))
        .with_state(app)
}

async fn info(State(app): AppState) -> Result<axum::Json<Info>, ApiErr> {
    Ok(axum::Json(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        store: app.store.backend().to_string(),
        revision: app.store.revision().await?,
        objects_revision: app.cache.revision(),
        head: app.head.clone(),
        store_url: app.cfg.store.shareable(),
    }))
}

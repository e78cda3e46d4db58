//! `GET /boot/swarm/SHA256?port=PORT[&failed=IP:PORT]`: a booting node's plan for image
//! SHA256 (its pieces and where to get them), for the node the image download would be for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use wulf_api::swarm::{Plan, PIECE_SIZE};

use crate::app::App;
use crate::web::ApiErr;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/boot/swarm/{sha256}", get(plan))
}

async fn plan(
    State(app): State<Arc<App>>,
    Path(sha256): Path<String>,
    // A map, not a struct: a repeated parameter is no extractor error (the last one counts).
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Plan>, ApiErr> {
    let bad = |m: String| ApiErr::new(StatusCode::BAD_REQUEST, m);
    let sha256 = sha256.to_ascii_lowercase();
    if !crate::enroll::images::is_image(&app, &sha256) {
        return Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            format!("{sha256} is not an image's content"),
        ));
    }
    let port = match q.get("port").map(String::as_str) {
        None => wulf_api::swarm::PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("port '{p}' is not a port number (1-65535)")))?,
    };
    let failed = match q.get("failed").map(String::as_str) {
        None | Some("") => None,
        Some(f) => Some(
            f.parse::<SocketAddr>()
                .map_err(|_| bad(format!("failed '{f}' is not IP:PORT")))?,
        ),
    };
    let peer = crate::enroll::peer_ip(req.extensions())
        .ok_or_else(|| bad("the asking address is unknown".into()))?;
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let who = crate::enroll::images::admit(&app, &sha256, auth, Some(peer))
        .await
        .map_err(|why| ApiErr::new(StatusCode::FORBIDDEN, why))?;
    crate::peers::ensure_local(&app, &sha256).await;
    let path = app.blobs.path(&sha256).ok_or_else(|| {
        ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "image {sha256} is not stored on this head (nor could it be fetched from another)"
            ),
        )
    })?;
    let pieces = app.swarm.pieces(&sha256, &path).await.map_err(|e| {
        tracing::error!("{e}");
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e)
    })?;
    let super::Joined {
        from,
        members,
        direct,
    } = app.swarm.join(&sha256, SocketAddr::new(peer, port), failed);
    let source = from.map_or_else(|| "the head".to_string(), |a| a.to_string());
    match failed {
        Some(f) => tracing::info!(
            "swarm: {who} at {peer} could not get image {sha256} from {f}; now from {source} ({members} nodes, {direct} from the head)"
        ),
        None => tracing::info!(
            "swarm: {who} at {peer} gets image {sha256} from {source} ({members} nodes, {direct} from the head)"
        ),
    }
    let key = super::share_key(&app.node_secret, &sha256);
    let expiry = wulf_api::command::unix_now() + super::MEMBER_SECS;
    Ok(Json(Plan {
        ticket: wulf_api::swarm::ticket(&key, &sha256, peer, expiry),
        key: hex::encode(&key),
        sha256,
        size: pieces.size,
        piece_size: PIECE_SIZE,
        pieces: pieces.hashes.clone(),
        peer: from.map(|a| a.to_string()),
        serve_secs: super::SERVE_SECS,
    }))
}

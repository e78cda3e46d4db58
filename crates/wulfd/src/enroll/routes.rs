//! `POST /api/v1/node/enroll`: a booting node trades its enrollment token for its credential.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use wulf_api::enroll::{EnrollReply, EnrollRequest};
use wulf_model::{Kind, NodeState};

use super::{peer_ip, rotate, source, standalone, state_of, TokenError};
use crate::app::{App, AppState};
use crate::web::ApiErr;

/// The largest enrollment request body.
const MAX_BODY: usize = 4096;

/// Routes a booting node calls with its enrollment token (no bearer token).
pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/node/enroll", post(enroll))
}

fn refused(msg: impl Into<String>) -> ApiErr {
    ApiErr::new(StatusCode::FORBIDDEN, msg)
}

async fn enroll(State(app): AppState, req: Request) -> Result<Json<EnrollReply>, ApiErr> {
    let peer = peer_ip(req.extensions());
    let src = source(peer);
    let bytes = crate::web::read_limited(req.into_body(), MAX_BODY, || {
        format!("an enrollment request is at most {MAX_BODY} bytes")
    })
    .await?;
    let r: EnrollRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiErr::bad(format!(
            "malformed enrollment request (want {{\"node\": UID, \"token\": TOKEN}}): {e}"
        ))
    })?;
    let (name, node_type) = {
        let st = app.cache.read();
        st.get(Kind::Node, &r.node)
            .and_then(|e| e.obj.as_node())
            .map(|n| (n.name.clone(), n.node_type.clone()))
            .unzip()
    };
    let Some(name) = name else {
        tracing::warn!(target: "audit", source = %src, node = %r.node, "refused an enrollment from {src}: no node {}", r.node);
        return Err(refused(format!("no node {} to enroll", r.node)));
    };
    if state_of(&app, &r.node) == Some(NodeState::Up) {
        tracing::warn!(target: "audit", source = %src, node = %name, "refused an enrollment of {name} from {src}: the node is up");
        return Err(refused(format!(
            "{name} is up: a node that is up cannot enroll again (its agent keeps the credential \
             of this boot; reboot the node to enroll anew)"
        )));
    }
    if node_type.as_deref() == Some(standalone::TYPE) {
        return enroll_standalone(&app, r, &name, &src).await;
    }
    if let Err(e) = app.enroll.check_token(&r.node, &r.token, peer, true) {
        let what = match &e {
            TokenError::Used => "a used enrollment token (replayed?)",
            TokenError::WrongAddress { .. } => "an enrollment token from the wrong address",
            TokenError::Expired => "an expired enrollment token",
            TokenError::Wrong | TokenError::Unknown => "a wrong enrollment token",
        };
        tracing::warn!(target: "audit", source = %src, node = %name, "refused an enrollment of {name} from {src}: {what}: {e}");
        return Err(refused(format!("enrollment of {name} refused: {e}")));
    }
    match rotate(&app, &r.node).await {
        Ok(credential) => {
            app.enroll.retire(&r.node, &r.token);
            tracing::info!(target: "audit", source = %src, node = %name, "enrolled {name} from {src}: a new credential for this boot (the previous one no longer works)");
            Ok(Json(EnrollReply {
                node: r.node,
                credential,
            }))
        }
        Err(e) => {
            // Nothing changed: the token stays good for another try.
            app.enroll.unconsume(&r.node, &r.token);
            Err((&e).into())
        }
    }
}

/// A standalone node trades the token an admin issued (kept hashed in the store): consumed in
/// the transaction that stores its nonce, so it enrolls once at whichever head.
async fn enroll_standalone(
    app: &App,
    r: EnrollRequest,
    name: &str,
    src: &str,
) -> Result<Json<EnrollReply>, ApiErr> {
    match standalone::enroll(app, &r.node, &r.token).await {
        Ok(Ok(credential)) => {
            tracing::info!(target: "audit", source = %src, node = %name, "enrolled standalone node {name} from {src}: a new credential (the previous one no longer works)");
            Ok(Json(EnrollReply {
                node: r.node,
                credential,
            }))
        }
        Ok(Err(e)) => {
            tracing::warn!(target: "audit", source = %src, node = %name, "refused an enrollment of standalone node {name} from {src}: {e}");
            Err(refused(format!("enrollment of {name} refused: {e}")))
        }
        Err(e) => Err((&e).into()),
    }
}

//! `POST /boot/installed?sha256=SHA`: a `disked` node's initramfs says it installed image
//! SHA on its local disk. It proves which node it is with its boot's enrollment token
//! (`Authorization: Bearer enroll:UID:TOKEN`, from the address the boot script went to). The
//! head then records the image as the node's `disk_image` with `boot_stage=local`, and its
//! boot script sends the node to its disk until the image changes or the stage is set back
//! to `pxe` (see docs/admin/boot-styles.md).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::{peer_ip, source};
use crate::app::App;
use crate::web::ApiErr;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/boot/installed", post(installed))
}

async fn installed(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<String, ApiErr> {
    let peer = peer_ip(&ext);
    let src = source(peer);
    let refused = |m: String| ApiErr::new(StatusCode::FORBIDDEN, m);
    let Some(sha) = q.get("sha256").filter(|s| wulf_model::valid_sha256(s)) else {
        return Err(ApiErr::bad(
            "give the installed image as ?sha256=HEX (64 hex digits)",
        ));
    };
    let Some((uid, token)) =
        crate::web::bearer(&headers).and_then(wulf_api::enroll::parse_enroll_token)
    else {
        return Err(refused(
            "send 'Authorization: Bearer enroll:UID:TOKEN' (the boot's enrollment token)".into(),
        ));
    };
    let Some((want, name)) = super::images::node_image(&app, uid) else {
        return Err(refused(format!("node {uid} boots no image")));
    };
    if let Err(e) = app.enroll.check_token(uid, token, peer, false) {
        tracing::warn!(target: "audit", source = %src, node = %name, "refused a disk install record of {name} from {src}: {e}");
        return Err(refused(format!("{name}: {e}")));
    }
    if &want != sha {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!("{name} boots image {want}, not {sha}: the image changed during the install; the next boot installs the new one"),
        ));
    }
    let uids = [uid.to_string()];
    app.db
        .modify(wulf_model::Kind::Node, &uids, |json, _| {
            json["boot_stage"] = Value::String("local".into());
            json["disk_image"] = Value::String(sha.clone());
            Ok(())
        })
        .await
        .map_err(ApiErr::from)?;
    tracing::info!(target: "audit", source = %src, node = %name, sha256 = %sha, "{name} installed image {sha} on its local disk; it boots from that disk until the image changes or its boot_stage is set to pxe");
    Ok(format!(
        "recorded: {name} boots image {sha} from its disk\n"
    ))
}

//! `POST /api/v1/node/replace?ids=NODE` with `{"mac": "NEW"}`: a node's hardware was replaced.
//!
//! The node keeps its name, index, IP, attributes and groups; it takes the new box's MAC (the
//! old MAC and the old `_altmacs` are dropped unless given again), a `pxe+local` node and a
//! node with a disk install (`disk_image`) go back to boot stage `pxe`, its credential is revoked (the new box enrolls) and the old
//! hardware's status is forgotten.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wulf_model::attributes::parse_assignments;
use wulf_model::{Kind, MacAddr};
use wulf_store::{Op, Txn};

use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::web::{read_json, selection, ApiErr};

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/node/replace", post(replace))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceRequest {
    mac: String,
    /// The new box's other MACs (`_altmacs`), if it has any.
    #[serde(default)]
    altmacs: Option<String>,
}

/// What was done.
#[derive(Debug, Serialize)]
struct ReplaceReply {
    node: String,
    old_mac: Option<String>,
    mac: String,
    boot_stage: Option<String>,
}

/// Who other than node `uid` has `mac`: a node or host (`mac`, `_altmacs`) or a node's BMC
/// (`_macs` bmc=…).
fn owner(st: &crate::cache::State, uid: &str, mac: MacAddr) -> Option<String> {
    if let Some((kind, owner)) = st.macs.get(&mac) {
        if &**owner != uid {
            let name = st
                .get(*kind, owner)
                .map(|e| e.obj.name().to_string())
                .unwrap_or_default();
            return Some(format!("{kind} {name}"));
        }
    }
    for obj in st.objects(Kind::Node) {
        let Some(node) = obj.as_node() else { continue };
        let bmc = st
            .attr(node, "_macs")
            .and_then(parse_assignments)
            .and_then(|a| {
                a.into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("bmc"))
                    .and_then(|(_, v)| v.parse::<MacAddr>().ok())
            });
        if bmc == Some(mac) {
            return Some(format!("the BMC of node {}", node.name));
        }
    }
    None
}

async fn replace(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<ReplaceReply>, ApiErr> {
    let req: ReplaceRequest = serde_json::from_value(read_json(&app, body).await?)
        .map_err(|e| ApiErr::bad(format!("malformed replace request: {e}")))?;
    let mac: MacAddr = req
        .mac
        .trim()
        .parse()
        .map_err(|_| ApiErr::bad(format!("mac {:?} is not a MAC address", req.mac)))?;
    let alt: Vec<MacAddr> = match req.altmacs.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(s) => wulf_model::attributes::parse_mac_list(s)
            .map_err(|e| ApiErr::bad(format!("altmacs: {e}")))?,
    };
    let (uid, name, old_mac) = {
        let st = app.cache.read();
        let uids = selection(&st, Kind::Node, &q, false)?;
        let [uid] = uids.as_slice() else {
            return Err(ApiErr::bad(format!(
                "replace takes exactly one node; {} are selected",
                uids.len()
            )));
        };
        let node = st
            .get(Kind::Node, uid)
            .and_then(|e| e.obj.as_node())
            .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, "the node vanished"))?;
        for m in std::iter::once(mac).chain(alt.iter().copied()) {
            if let Some(o) = owner(&st, uid, m) {
                return Err(ApiErr::new(
                    StatusCode::CONFLICT,
                    format!("MAC {m} is already used by {o}"),
                ));
            }
        }
        (uid.clone(), node.name.clone(), node.mac)
    };
    let altmacs = (!alt.is_empty()).then(|| {
        alt.iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let objs = app
        .db
        .modify(Kind::Node, std::slice::from_ref(&uid), |json, obj| {
            json["mac"] = Value::String(mac.to_string());
            if let Some(attrs) = json.get_mut("attributes").and_then(Value::as_object_mut) {
                match &altmacs {
                    Some(a) => {
                        attrs.insert("_altmacs".into(), Value::String(a.clone()));
                    }
                    None => {
                        attrs.remove("_altmacs");
                    }
                }
            } else if let Some(a) = &altmacs {
                json["attributes"] = serde_json::json!({ "_altmacs": a });
            }
            if obj
                .as_node()
                .is_some_and(|n| n.boot_sequence == "pxe+local" || n.disk_image.is_some())
            {
                // New hardware has not been installed: PXE again (a disked node installs).
                json["boot_stage"] = Value::String("pxe".into());
                json["disk_image"] = Value::Null;
            }
            Ok(())
        })
        .await?;
    let node = objs
        .first()
        .and_then(|o| o.as_node())
        .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, "the node vanished"))?;
    let old = old_mac.map(|m| m.to_string());
    tracing::info!(target: "audit", account = %who.name, source = %who.source, node = %name, tag.nodes = %name, "replaced node {name}'s MAC {} with {mac}", old.as_deref().unwrap_or("(none)"));
    // The old box's credential and status go with it; the node's record is already changed,
    // so a failure here is logged and reported, not undone.
    if let Err(e) = crate::enroll::revoke(&app, &uid).await {
        tracing::warn!(node = %name, error = %e, "cannot revoke the replaced node's credential");
        return Err(e.into());
    }
    let keys = app.status.forget(&uid);
    let txn = Txn {
        compares: Vec::new(),
        ops: keys.into_iter().map(|key| Op::Delete { key }).collect(),
    };
    if let Err(e) = app.store.txn(txn).await {
        tracing::warn!(node = %name, error = %e, "cannot remove the replaced node's status");
        return Err(e.into());
    }
    Ok(Json(ReplaceReply {
        node: name,
        old_mac: old,
        mac: mac.to_string(),
        boot_stage: node.boot_stage.clone(),
    }))
}

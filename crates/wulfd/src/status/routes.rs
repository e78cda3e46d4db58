//! Status routes: nodes' reports in, derived status and summaries out.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use wulf_model::Kind;

use crate::app::{App, AppState};
use crate::web::{by_index, json_response, selection, ApiErr};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/api/v1/node/status",
            get(node_status).post(node_status_report),
        )
        .route("/api/v1/node/status/summary", get(node_status_summary))
}

/// `GET /api/v1/node/status?ids=SEL&detail=0|1|2`.
async fn node_status(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiErr> {
    use crate::status::Detail;
    let detail = match q.get("detail").map(String::as_str) {
        None | Some("2") | Some("full") => Detail::Full,
        Some("1") | Some("heartbeat") => Detail::Heartbeat,
        Some("0") | Some("state") => Detail::State,
        Some(other) => {
            return Err(ApiErr::bad(format!(
                "detail must be 0 (state), 1 (heartbeat) or 2 (full), not '{other}'"
            )))
        }
    };
    // A short list in one piece (with its length), read under the selection's own guard.
    let (uids, short) = {
        let st = app.cache.read();
        let uids = by_index(&st, selection(&st, Kind::Node, &q, true)?);
        let short = (uids.len() <= STREAM_CHUNK).then(|| app.status.view(&st, &uids, detail));
        (uids, short)
    };
    let now = crate::status::now_ms();
    if let Some(view) = short {
        let bytes = serde_json::to_vec(&view)
            .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        return Ok(json_response(bytes, StatusCode::OK));
    }
    // Many nodes: the JSON array is written and sent a chunk of nodes at a time (the same
    // bytes as one `serde_json::to_vec` of the whole list), so 100,000 nodes' status is never
    // all in memory at once.
    let mut wrote = false;
    let chunks = (0..uids.len().div_ceil(STREAM_CHUNK)).map(move |c| {
        let from = c * STREAM_CHUNK;
        let part = &uids[from..(from + STREAM_CHUNK).min(uids.len())];
        let mut out = Vec::with_capacity(part.len() * 512);
        if c == 0 {
            out.push(b'[');
        }
        let mut failed = None;
        app.status
            .view_each(&app.cache.read(), part, detail, now, |s| {
                if std::mem::replace(&mut wrote, true) {
                    out.push(b',');
                }
                if let Err(e) = serde_json::to_writer(&mut out, &s) {
                    failed.get_or_insert(e);
                }
            });
        if let Some(e) = failed {
            return Err(std::io::Error::other(e));
        }
        if from + part.len() == uids.len() {
            out.push(b']');
        }
        Ok(axum::body::Bytes::from(out))
    });
    Response::builder()
        .header(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Nodes per piece of a streamed status listing.
const STREAM_CHUNK: usize = 1024;

/// `GET /api/v1/node/status/summary?ids=SEL[&since=N]`.
async fn node_status_summary(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<wulf_api::status::StatusSummary>, ApiErr> {
    use wulf_api::status::{StateGroup, StatusSummary};
    use wulf_model::NodeState;
    if let Some(since) = q.get("since") {
        let since: u64 = since
            .parse()
            .map_err(|_| ApiErr::bad(format!("since must be a number, not '{since}'")))?;
        let mut rx = app.status.subscribe();
        let wait = rx.wait_for(|n| *n > since);
        // No change for a while: answer anyway (states also change with time alone).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
    }
    let changes = *app.status.subscribe().borrow();
    let states = {
        let st = app.cache.read();
        let uids = by_index(&st, selection(&st, Kind::Node, &q, true)?);
        app.status.states(&st, &uids)
    };
    let total = states.len();
    type Group = ((NodeState, Option<&'static str>), Vec<String>);
    let mut groups: Vec<Group> = Vec::new();
    for (state, reason, name) in states {
        let key = (state, reason.map(|r| r.as_str()));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, names)) => names.push(name),
            None => groups.push((key, vec![name])),
        }
    }
    let order = |s: NodeState| match s {
        NodeState::Up => 0,
        NodeState::Booting => 1,
        NodeState::Down => 2,
        NodeState::New => 3,
    };
    groups.sort_by_key(|((s, r), _)| (order(*s), *r));
    Ok(axum::Json(StatusSummary {
        changes,
        total,
        groups: groups
            .into_iter()
            .map(|((s, r), names)| StateGroup {
                state: s.as_str().to_string(),
                down_reason: r.map(str::to_string),
                count: names.len(),
                nodes: wulf_model::hostlist::compress(&names),
            })
            .collect(),
    }))
}

/// `POST /api/v1/node/status`: a node's report, with its own credential.
async fn node_status_report(
    State(app): AppState,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<axum::Json<wulf_api::status::ReportReply>, ApiErr> {
    let uid = crate::auth::node_uid(&app, &headers, "a status report").await?;
    let uid = uid.as_str();
    let bytes =
        crate::web::read_limited(body, 1 << 20, || "a status report is at most 1 MiB".into())
            .await?;
    let report: wulf_api::status::StatusReport = serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::bad(format!("malformed status report: {e}")))?;
    crate::status::check_report(&report)
        .map_err(|e| ApiErr::bad(format!("malformed status report: {e}")))?;
    if report.node != uid {
        tracing::warn!(target: "audit", node = %uid, claimed = %report.node, "refused a status report for another node");
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            format!(
                "this credential belongs to node {uid}, not to {}",
                report.node
            ),
        ));
    }
    let reply = {
        let st = app.cache.read();
        let node = st
            .get(Kind::Node, uid)
            .and_then(|e| e.obj.as_node())
            .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, format!("no node {uid}")))?;
        wulf_api::status::ReportReply {
            name: node.name.clone(),
            attributes: crate::status::reply_attributes(&st, node),
            heads: {
                // This head as the node reached it, then every other head that is up.
                let mine = crate::boot::api_base(&crate::boot::request_base(&app, &headers));
                let mut heads = vec![mine.clone()];
                if let Ok(live) = app.live_heads.read() {
                    for h in live.iter().filter(|h| h.name != app.head) {
                        heads.extend(h.urls.iter().filter(|u| **u != mine).cloned());
                    }
                }
                heads
            },
        }
    };
    app.status.report(uid, report);
    Ok(axum::Json(reply))
}

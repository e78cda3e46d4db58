//! Command routes: the agents' long poll and results, and the admin's exec and orphan.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use wulf_api::action::{ActionReply, ExecOutcome, ExecReply, ExecRequest, NodeOutcome, Via};
use wulf_api::command::{Command, CommandResult, Order};
use wulf_model::{Kind, NodeState};

use super::{ExecError, MAX_WAIT};
use crate::app::{App, AppState};
use crate::web::{by_index, read_json, selection, ApiErr};

/// Longest an exec may run on a node.
const MAX_EXEC_SECS: u64 = 7 * 24 * 3600;
/// How long an agent has to pick up a command it is polling for.
pub const PICKUP: Duration = Duration::from_secs(10);

/// Routes agents call with their node token (exempt from the admin check).
pub fn node_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/node/commands", get(poll))
        .route("/api/v1/node/commands/result", post(result))
}

/// Routes admins call.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/node/exec", post(exec))
        .route("/api/v1/node/orphan", post(orphan))
}

/// `GET /api/v1/node/commands?wait=SECS`: commands for the calling node, waiting up to SECS
/// (at most 30) for one to arrive.
async fn poll(
    State(app): AppState,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Command>>, ApiErr> {
    let uid = crate::auth::node_uid(&app, &headers, "a command poll").await?;
    let wait = match q.get("wait") {
        None => Duration::from_secs(25),
        Some(w) => Duration::from_secs(
            w.parse()
                .map_err(|_| ApiErr::bad(format!("wait must be a number of seconds, not '{w}'")))?,
        ),
    }
    .min(MAX_WAIT);
    let (_open, notify) = app.commands.poll_started(&uid);
    let until = tokio::time::Instant::now() + wait;
    loop {
        let cmds = app.commands.take(&uid);
        if !cmds.is_empty() {
            for c in &cmds {
                tracing::debug!(node = %uid, id = %c.id, order = c.order.name(), "command handed to the agent");
            }
            return Ok(Json(cmds));
        }
        if tokio::time::timeout_at(until, notify.notified())
            .await
            .is_err()
        {
            return Ok(Json(Vec::new()));
        }
    }
}

/// `POST /api/v1/node/commands/result`: the calling node's result of one of its commands.
async fn result(
    State(app): AppState,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiErr> {
    let uid = crate::auth::node_uid(&app, &headers, "a command result").await?;
    let bytes = crate::web::read_limited(body, 4 * wulf_api::command::MAX_OUTPUT, || {
        "a command result is at most 4 MiB".into()
    })
    .await?;
    let r: CommandResult = serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::bad(format!("malformed command result: {e}")))?;
    if app.commands.complete(&uid, r) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            "no command of this node waits for that result (answered already, or timed out)",
        ))
    }
}

/// A selected node: uid, name, state and down reason now.
pub struct Target {
    pub uid: String,
    pub name: String,
    pub state: NodeState,
    pub reason: Option<&'static str>,
}

impl Target {
    /// `down (clean shutdown)`, `booting`, …
    pub fn describe(&self) -> String {
        match self.reason {
            Some(r) => format!("{} ({r})", self.state.as_str()),
            None => self.state.as_str().to_string(),
        }
    }
}

/// The nodes `ids=`/`all=` select, in index order, with their state.
pub fn targets(app: &App, q: &HashMap<String, String>) -> Result<Vec<Target>, ApiErr> {
    let st = app.cache.read();
    let uids = by_index(&st, selection(&st, Kind::Node, q, false)?);
    let states = app.status.states(&st, &uids);
    Ok(uids
        .into_iter()
        .zip(states)
        .map(|(uid, (state, reason, name))| Target {
            uid,
            name,
            state,
            reason: reason.map(|r| r.as_str()),
        })
        .collect())
}

/// One node by uid, with its state.
pub fn targets_one(app: &App, uid: &str) -> Option<Target> {
    let st = app.cache.read();
    let name = st.get(Kind::Node, uid)?.obj.name().to_string();
    let (state, reason, _) = app.status.states(&st, &[uid.to_string()]).pop()?;
    Some(Target {
        uid: uid.to_string(),
        name,
        state,
        reason: reason.map(|r| r.as_str()),
    })
}

/// Why no command can go to this node from this head.
pub fn unreachable(app: &App, t: &Target) -> String {
    if t.state != NodeState::Up {
        return format!("node is {}", t.describe());
    }
    match app.status.heartbeat(&t.uid).map(|h| h.head) {
        Some(h) if !h.is_empty() && *h != *app.head => {
            format!("the agent reports to head {h}, not to this one; send the request to that head")
        }
        _ => "the agent does not poll for commands (wulf-agent older than this head, or \
              cannot reach it)"
            .to_string(),
    }
}

/// Send one order to one node and wait for its result.
pub async fn send(
    app: &App,
    uid: &str,
    order: Order,
    timeout: Duration,
) -> Result<CommandResult, ExecError> {
    // Signed with the node's credential of this boot; a node that never enrolled has no
    // agent to take the command.
    let cred = crate::enroll::current_credential(app, uid)
        .await
        .ok_or(ExecError::NotConnected)?;
    app.commands
        .run(&app.head, uid, &cred, order, PICKUP, timeout)
        .await
}

fn audit_names(targets: &[Target]) -> String {
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    wulf_model::hostlist::compress(&names)
}

/// `POST /api/v1/node/exec?ids=SEL`: run a command on every selected node.
async fn exec(
    State(app): AppState,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<ExecReply>, ApiErr> {
    let req: ExecRequest = serde_json::from_value(read_json(&app, body).await?)
        .map_err(|e| ApiErr::bad(format!("malformed exec request: {e}")))?;
    if req.argv.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(ApiErr::bad(
            "exec needs a command: argv must name a program",
        ));
    }
    if req.timeout_secs == 0 || req.timeout_secs > MAX_EXEC_SECS {
        return Err(ApiErr::bad(format!(
            "timeout_secs must be 1 to {MAX_EXEC_SECS}, not {}",
            req.timeout_secs
        )));
    }
    if req.fanout == 0 {
        return Err(ApiErr::bad("fanout must be at least 1"));
    }
    let targets = targets(&app, &q)?;
    tracing::info!(target: "audit", account = %who.name, source = %who.source, nodes = %audit_names(&targets), command = ?req.argv, "exec");
    let timeout = Duration::from_secs(req.timeout_secs) + Duration::from_secs(5);
    let req = Arc::new(req);
    let results: Vec<ExecOutcome> = stream::iter(targets)
        .map(|t| {
            let (app, req) = (app.clone(), req.clone());
            async move {
                let mut out = ExecOutcome {
                    uid: t.uid.clone(),
                    name: t.name.clone(),
                    exit: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    error: None,
                    skipped: false,
                    millis: 0,
                };
                if req.up_only && t.state != NodeState::Up {
                    out.skipped = true;
                    out.error = Some(format!("skipped: node is {}", t.describe()));
                    return out;
                }
                if !app.commands.connected(&t.uid) {
                    out.error = Some(unreachable(&app, &t));
                    return out;
                }
                let start = Instant::now();
                let order = Order::Exec {
                    argv: req.argv.clone(),
                    stdin: req.stdin.clone(),
                    timeout_secs: req.timeout_secs,
                };
                match send(&app, &t.uid, order, timeout).await {
                    Ok(r) => {
                        out.exit = r.exit;
                        out.stdout = r.stdout;
                        out.stderr = r.stderr;
                        out.error = r.error;
                    }
                    Err(e) => out.error = Some(e.to_string()),
                }
                out.millis = start.elapsed().as_millis() as u64;
                out
            }
        })
        .buffered(req.fanout.min(4096))
        .collect()
        .await;
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok() && !r.skipped)
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        tracing::info!(target: "audit", account = %who.name, source = %who.source, nodes = %wulf_model::hostlist::compress(&failed), "exec failed on some nodes");
    }
    Ok(Json(ExecReply { results }))
}

/// `POST /api/v1/node/orphan?ids=SEL`: make nodes orphans on purpose (before head maintenance).
async fn orphan(
    State(app): AppState,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ActionReply>, ApiErr> {
    let targets = targets(&app, &q)?;
    tracing::info!(target: "audit", account = %who.name, source = %who.source, nodes = %audit_names(&targets), "orphan");
    let results = stream::iter(targets)
        .map(|t| {
            let app = app.clone();
            async move {
                let start = Instant::now();
                let mut out = NodeOutcome {
                    uid: t.uid.clone(),
                    name: t.name.clone(),
                    ok: false,
                    result: String::new(),
                    via: Via::None,
                    detail: None,
                    millis: 0,
                };
                if !app.commands.connected(&t.uid) {
                    out.result = "agent not up".into();
                    out.detail = Some(unreachable(&app, &t));
                    return out;
                }
                out.via = Via::Agent;
                match send(&app, &t.uid, Order::Orphan, Duration::from_secs(10)).await {
                    Ok(r) if r.error.is_none() => {
                        out.ok = true;
                        out.result = "orphaned".into();
                    }
                    Ok(r) => {
                        out.result = "agent refused".into();
                        out.detail = r.error;
                    }
                    Err(e) => {
                        out.result = "agent did not answer".into();
                        out.detail = Some(e.to_string());
                    }
                }
                out.millis = start.elapsed().as_millis() as u64;
                out
            }
        })
        .buffered(64)
        .collect()
        .await;
    Ok(Json(ActionReply { results }))
}

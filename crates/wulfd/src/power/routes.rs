//! `POST /api/v1/node/power?ids=SEL`: status, on, off, cycle and reset through each node's
//! BMC; reboot and shutdown soft first (through the agent), hard when that does not do.
//!
//! Every selected node's `power_uri` is filled in and parsed before anything is done: when one
//! is malformed, names an unknown scheme or needs a value its node lacks, the request is
//! refused (400, naming each such node and what is wrong) and no node is touched. A node
//! with no power URI, or `none`, fails on its own (it has no BMC to act on).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use wulf_api::action::{ActionReply, NodeOutcome, PowerAction, PowerMode, PowerRequest, Via};
use wulf_model::Kind;

use super::uri::{resolve, PowerUri};
use super::{bmc, BmcOp, PowerError, PowerState};
use crate::app::{App, AppState};
use crate::exec::SoftOutcome;
use crate::web::{by_index, read_json, selection, ApiErr};

/// Longest `timeout_secs` a request may give.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Most nodes acted on at once.
const MAX_FANOUT: usize = 4096;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/node/power", post(power))
}

/// One selected node and its BMC (resolved when the action may need it).
struct Plan {
    uid: String,
    name: String,
    bmc: Option<Result<PowerUri, PowerError>>,
}

/// True when `req` may go to the BMC.
fn needs_bmc(req: &PowerRequest) -> bool {
    !(req.action.is_soft_capable() && req.mode == PowerMode::Soft)
}

fn hostlist<S: AsRef<str>>(names: &[S]) -> String {
    wulf_model::hostlist::compress(names)
}

async fn power(
    State(app): AppState,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<ActionReply>, ApiErr> {
    let req: PowerRequest = serde_json::from_value(read_json(&app, body).await?)
        .map_err(|e| ApiErr::bad(format!("malformed power request: {e}")))?;
    if req.timeout_secs == 0 || req.timeout_secs > MAX_TIMEOUT_SECS {
        return Err(ApiErr::bad(format!(
            "timeout_secs must be 1 to {MAX_TIMEOUT_SECS}, not {}",
            req.timeout_secs
        )));
    }
    if req.fanout == 0 || req.fanout > MAX_FANOUT {
        return Err(ApiErr::bad(format!(
            "fanout must be 1 to {MAX_FANOUT}, not {}",
            req.fanout
        )));
    }
    let plans = plan(&app, &q, &req)?;
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let mode = if req.action.is_soft_capable() {
        format!("{:?}", req.mode).to_ascii_lowercase()
    } else {
        "hard".to_string()
    };
    tracing::info!(target: "audit", account = %who.name, source = %who.source, nodes = %hostlist(&names), action = req.action.as_str(),
        mode = %mode, timeout_secs = req.timeout_secs, "power");
    refuse_bad_uris(&plans, &req)?;

    let req = Arc::new(req);
    let results: Vec<NodeOutcome> = stream::iter(plans)
        .map(|p| {
            let (app, req) = (app.clone(), req.clone());
            async move { act(&app, p, &req).await }
        })
        .buffered(req.fanout)
        .collect()
        .await;

    // One AUDIT line per outcome: `ok (on) n[0-99]`, `failed (BMC timeout) n[100-103]`.
    let mut groups: Vec<((bool, &str), Vec<&str>)> = Vec::new();
    for r in &results {
        let key = (r.ok, r.result.as_str());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(&r.name),
            None => groups.push((key, vec![&r.name])),
        }
    }
    for ((ok, outcome), names) in groups {
        tracing::info!(target: "audit", account = %who.name, source = %who.source, nodes = %hostlist(&names), action = req.action.as_str(),
            ok, outcome, "power outcome");
    }
    Ok(Json(ActionReply { results }))
}

/// The selected nodes in index order, each with its BMC when the action may need it.
fn plan(app: &App, q: &HashMap<String, String>, req: &PowerRequest) -> Result<Vec<Plan>, ApiErr> {
    let st = app.cache.read();
    let uids = by_index(&st, selection(&st, Kind::Node, q, false)?);
    Ok(uids
        .into_iter()
        .filter_map(|uid| {
            let node = st.get(Kind::Node, &uid)?.obj.as_node()?.clone();
            let bmc = needs_bmc(req).then(|| resolve(&st, &node));
            Some(Plan {
                uid,
                name: node.name,
                bmc,
            })
        })
        .collect())
}

/// Refuse the whole request (nothing done) when a node's power URI is bad.
fn refuse_bad_uris(plans: &[Plan], req: &PowerRequest) -> Result<(), ApiErr> {
    let bad: Vec<(&str, String)> = plans
        .iter()
        .filter_map(|p| match &p.bmc {
            Some(Err(e @ PowerError::BadUri(_))) => Some((p.name.as_str(), e.detail())),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = bad.iter().map(|(n, _)| *n).collect();
    tracing::info!(target: "audit", nodes = %hostlist(&names), action = req.action.as_str(),
        "power refused: bad power_uri, nothing done");
    const SHOWN: usize = 20;
    let mut lines: Vec<String> = bad
        .iter()
        .take(SHOWN)
        .map(|(n, d)| format!("{n}: {d}"))
        .collect();
    if bad.len() > SHOWN {
        lines.push(format!(
            "… and {} more ({})",
            bad.len() - SHOWN,
            hostlist(&names[SHOWN..])
        ));
    }
    Err(ApiErr::bad(format!(
        "bad power_uri on {} node{} ({}), nothing was done to any node:\n{}",
        bad.len(),
        if bad.len() == 1 { "" } else { "s" },
        hostlist(&names),
        lines.join("\n")
    )))
}

fn outcome(p: &Plan) -> NodeOutcome {
    NodeOutcome {
        uid: p.uid.clone(),
        name: p.name.clone(),
        ok: false,
        result: String::new(),
        via: Via::None,
        detail: None,
        millis: 0,
    }
}

fn failed(out: &mut NodeOutcome, e: &PowerError, before: Option<String>) {
    out.ok = false;
    out.result = e.class().to_string();
    out.detail = Some(match before {
        Some(b) => format!("{b}; {}", e.detail()),
        None => e.detail(),
    });
}

/// Carry out the request on one node.
async fn act(app: &App, p: Plan, req: &PowerRequest) -> NodeOutcome {
    let start = Instant::now();
    let timeout = Duration::from_secs(req.timeout_secs);
    let mut out = outcome(&p);
    let op = match req.action {
        PowerAction::Status => Some(BmcOp::Status),
        PowerAction::On => Some(BmcOp::On),
        PowerAction::Off => Some(BmcOp::Off),
        PowerAction::Cycle => Some(BmcOp::Cycle),
        PowerAction::Reset => Some(BmcOp::Reset),
        PowerAction::Reboot | PowerAction::Shutdown => None,
    };
    match op {
        Some(op) => {
            out.via = Via::Bmc;
            match on_bmc(&p, op, timeout).await {
                Ok(s) => {
                    out.ok = true;
                    out.result = match op {
                        BmcOp::Status | BmcOp::On | BmcOp::Off => s.as_str().to_string(),
                        BmcOp::Cycle => "cycled".to_string(),
                        BmcOp::Reset => "reset".to_string(),
                    };
                }
                Err(e) => failed(&mut out, &e, None),
            }
        }
        None => soft_then_hard(app, &p, req, timeout, &mut out).await,
    }
    out.millis = start.elapsed().as_millis() as u64;
    out
}

async fn on_bmc(p: &Plan, op: BmcOp, timeout: Duration) -> Result<PowerState, PowerError> {
    let uri = match &p.bmc {
        Some(Ok(u)) => u,
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(PowerError::NoUri),
    };
    let r = bmc(uri, op, timeout).await;
    if let Err(e) = &r {
        tracing::warn!(node = %p.name, bmc = %uri, op = op.as_str(), error = %e, "power failed");
    }
    r
}

/// Reboot or shutdown: through the agent unless `hard`, then through the BMC unless `soft`.
async fn soft_then_hard(
    app: &App,
    p: &Plan,
    req: &PowerRequest,
    timeout: Duration,
    out: &mut NodeOutcome,
) {
    let reboot = req.action == PowerAction::Reboot;
    let word = if reboot { "reboot" } else { "shutdown" };
    let why_hard = match req.mode {
        PowerMode::Hard => None,
        mode => {
            let soft = soft(app, &p.uid, req.action, timeout).await;
            let why = match soft {
                SoftOutcome::Done => {
                    out.ok = true;
                    out.via = Via::Agent;
                    out.result = format!("soft {word}");
                    return;
                }
                SoftOutcome::NotConnected(why) => ("agent not up", why),
                SoftOutcome::Refused(why) => ("agent refused", why),
                SoftOutcome::TimedOut => (
                    "soft timeout",
                    format!("still up {} s after the agent was asked", timeout.as_secs()),
                ),
            };
            if mode == PowerMode::Soft {
                out.via = Via::Agent;
                out.result = why.0.to_string();
                out.detail = Some(why.1);
                return;
            }
            Some(format!("{}: {}; went to the BMC", why.0, why.1))
        }
    };
    out.via = Via::Bmc;
    let hard = async {
        if !reboot {
            return on_bmc(p, BmcOp::Off, timeout).await.map(|_| None);
        }
        match on_bmc(p, BmcOp::Status, timeout).await? {
            PowerState::On => on_bmc(p, BmcOp::Cycle, timeout).await.map(|_| None),
            PowerState::Off => on_bmc(p, BmcOp::On, timeout)
                .await
                .map(|_| Some("was off: powered on".to_string())),
        }
    };
    match hard.await {
        Ok(note) => {
            out.ok = true;
            out.result = format!("hard {word}");
            let d: Vec<String> = why_hard.into_iter().chain(note).collect();
            out.detail = (!d.is_empty()).then(|| d.join("; "));
        }
        Err(e) => failed(out, &e, why_hard),
    }
}

/// The soft path: the agent reboots or powers off the node cleanly.
async fn soft(app: &App, uid: &str, action: PowerAction, timeout: Duration) -> SoftOutcome {
    crate::exec::soft_power(app, uid, action, timeout).await
}

//! Soft power: a clean reboot or poweroff asked of the node's agent, and the check that the
//! node really went down, so the caller knows when to fall back to the BMC.

use std::time::{Duration, Instant};

use wulf_api::action::PowerAction;
use wulf_api::command::Order;
use wulf_model::NodeState;

use crate::app::App;

/// What a soft reboot or shutdown came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoftOutcome {
    /// The agent accepted and the node went down (or, for a reboot, booted again).
    Done,
    /// No agent to ask: the node is not up, or its agent does not poll this head.
    NotConnected(String),
    /// The agent answered with an error.
    Refused(String),
    /// Asked, but the node was still up at the timeout.
    TimedOut,
}

/// Ask node `uid` to reboot or power off cleanly and wait (up to `timeout`) until it has gone
/// down: its agent sent its shutdown report, it stopped reporting, it asked for a boot
/// script, or it reports with a new boot id.
pub async fn soft_power(
    app: &App,
    uid: &str,
    action: PowerAction,
    timeout: Duration,
) -> SoftOutcome {
    let order = match action {
        PowerAction::Reboot => Order::Reboot,
        PowerAction::Shutdown => Order::Shutdown,
        _ => return SoftOutcome::Refused(format!("{} has no soft form", action.as_str())),
    };
    if !app.commands.connected(uid) {
        let why = match super::routes::targets_one(app, uid) {
            Some(t) => super::routes::unreachable(app, &t),
            None => format!("no node {uid}"),
        };
        return SoftOutcome::NotConnected(why);
    }
    let before = app.status.heartbeat(uid);
    let start = Instant::now();
    let mut changes = app.status.subscribe();
    let ack = super::routes::send(app, uid, order, timeout.min(Duration::from_secs(10))).await;
    match ack {
        Ok(r) if r.error.is_none() => {}
        Ok(r) => return SoftOutcome::Refused(r.error.unwrap_or_default()),
        Err(super::ExecError::NotConnected) => {
            return SoftOutcome::NotConnected("the agent stopped polling".into())
        }
        Err(e) => return SoftOutcome::Refused(e.to_string()),
    }
    let deadline = tokio::time::Instant::from_std(start + timeout);
    loop {
        if went_down(app, uid, before.as_ref()) {
            return SoftOutcome::Done;
        }
        // Wake on every status change, and at least once a second (states change with time).
        let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
        let _ = tokio::time::timeout_at(tick, changes.changed()).await;
        if tokio::time::Instant::now() >= deadline {
            return if went_down(app, uid, before.as_ref()) {
                SoftOutcome::Done
            } else {
                SoftOutcome::TimedOut
            };
        }
    }
}

fn went_down(app: &App, uid: &str, before: Option<&crate::status::Heartbeat>) -> bool {
    let now = app.status.heartbeat(uid);
    if let (Some(b), Some(n)) = (before, now.as_ref()) {
        if n.booted_ms > b.booted_ms || (n.boot_id.is_some() && n.boot_id != b.boot_id) {
            return true;
        }
    }
    match super::routes::targets_one(app, uid) {
        Some(t) => t.state != NodeState::Up,
        None => true,
    }
}

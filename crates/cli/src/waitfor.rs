//! `waitfor up|down|booting [--timeout S]`: wait until every selected node is in a state.
//!
//! Each round reads the nodes' states (`GET /node/status?detail=0`); while some lag, it waits
//! on the head's change counter (`GET /node/status/summary?since=N`, a long poll the head
//! answers at the next change or after about 10 s), so a change is seen at once, and a state
//! that changes with time alone (a silent node going down) within seconds.

use std::time::{Duration, Instant};

use serde::Serialize;
use wulf_api::status::NodeStatus;
use wulf_model::{hostlist, Kind};

use crate::args::{Cli, ObjectCmd, WaitState, WaitforArgs};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::power::nodes_only;
use crate::{output, status};

/// The head answers a long poll after about this long without a change.
const LONG_POLL: Duration = Duration::from_secs(10);
/// Fewest time between two reads of every node's state (reports arrive all the time).
const MIN_ROUND: Duration = Duration::from_millis(250);

pub(crate) fn check(kind: Kind, a: &WaitforArgs) -> Result<(), Fail> {
    nodes_only(kind, "waitfor")?;
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(usage(format!(
            "--timeout must be a positive number of seconds, not {}",
            a.timeout
        )));
    }
    Ok(())
}

#[derive(Serialize)]
struct State<'a> {
    name: &'a str,
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    down_reason: Option<&'a str>,
}

pub(crate) fn run(cli: &Cli, kind: Kind, cmd: &ObjectCmd, a: &WaitforArgs) -> Result<(), Fail> {
    check(kind, a)?;
    let c = client(cli)?;
    let ids = cmd.ids_query(&[]);
    let ids = ids.as_deref();
    let want = a.state.as_str();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.timeout.min(1e9));
    let mut since = status::summary(&c, ids, None)?.changes;
    loop {
        let round = Instant::now();
        let nodes = status::nodes(&c, ids, 0)?;
        let lag = laggards(&nodes, a.state);
        if lag.is_empty() {
            if cli.json {
                let states: Vec<State> = nodes
                    .iter()
                    .map(|n| State {
                        name: &n.name,
                        state: &n.state,
                        down_reason: n.down_reason.as_deref(),
                    })
                    .collect();
                output::print_json(&states);
            } else if !nodes.is_empty() {
                let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                println!("ok ({want}) {}", hostlist::compress(&names));
            }
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Fail::Request(anyhow::anyhow!(
                "timed out after {} s waiting for {} to be {want}: {}",
                trim_secs(a.timeout),
                hostlist::compress(&lag.iter().map(|n| n.name.as_str()).collect::<Vec<_>>()),
                describe(&lag)
            )));
        }
        if deadline - now > LONG_POLL + Duration::from_secs(1) {
            since = status::summary(&c, ids, Some(since))?.changes;
        } else {
            // Near the end a long poll could overrun the timeout: look again each second.
            std::thread::sleep((deadline - now).min(Duration::from_secs(1)));
        }
        let spent = round.elapsed();
        if spent < MIN_ROUND {
            std::thread::sleep(MIN_ROUND - spent);
        }
    }
}

fn trim_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// The nodes not in `want`.
pub(crate) fn laggards(nodes: &[NodeStatus], want: WaitState) -> Vec<&NodeStatus> {
    nodes.iter().filter(|n| n.state != want.as_str()).collect()
}

/// `down (clean shutdown) n[3-4], booting n5`: the laggards by state.
pub(crate) fn describe(lag: &[&NodeStatus]) -> String {
    let mut by: Vec<(String, Vec<&str>)> = Vec::new();
    for n in lag {
        let label = match &n.down_reason {
            Some(r) => format!("{} ({r})", n.state),
            None => n.state.clone(),
        };
        match by.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(&n.name),
            None => by.push((label, vec![&n.name])),
        }
    }
    by.iter()
        .map(|(l, v)| format!("{l} {}", hostlist::compress(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, state: &str, reason: Option<&str>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            state: state.into(),
            down_reason: reason.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn laggards_by_state() {
        let nodes = [
            n("n0", "up", None),
            n("n3", "down", Some("clean shutdown")),
            n("n4", "down", Some("clean shutdown")),
            n("n5", "booting", None),
            n("n6", "new", None),
        ];
        let lag = laggards(&nodes, WaitState::Up);
        assert_eq!(
            describe(&lag),
            "down (clean shutdown) n[3-4], booting n5, new n6"
        );
        assert_eq!(laggards(&nodes, WaitState::Down).len(), 3);
        assert_eq!(laggards(&nodes, WaitState::Booting).len(), 4);
        assert_eq!(trim_secs(30.0), "30");
        assert_eq!(trim_secs(2.5), "2.5");
    }
}

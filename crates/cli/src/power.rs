//! `power status|on|off|cycle|reset`, `reboot`, `shutdown` and `orphan`: one request to the
//! head, which acts on every selected node with bounded fan-out; the results are printed
//! grouped by outcome as hostlists.

use std::io::Write;

use wulf_api::action::{ActionReply, NodeOutcome, PowerAction, PowerMode, PowerRequest, Via};
use wulf_model::{hostlist, Kind};

use crate::args::{Cli, ObjectCmd, PowerArgs, PowerVerb, SoftArgs};
use crate::conn::action_client;
use crate::fail::{usage, Fail};
use crate::output;

/// Refuses `verb` on anything but nodes, before anything is sent.
pub(crate) fn nodes_only(kind: Kind, verb: &str) -> Result<(), Fail> {
    if kind == Kind::Node {
        Ok(())
    } else {
        Err(usage(format!(
            "{verb} is a node action: wulf node -i NODES {verb}"
        )))
    }
}

/// The request `power …` sends.
pub(crate) fn power_request(a: &PowerArgs) -> PowerRequest {
    let action = match a.action {
        PowerVerb::Status => PowerAction::Status,
        PowerVerb::On => PowerAction::On,
        PowerVerb::Off => PowerAction::Off,
        PowerVerb::Cycle => PowerAction::Cycle,
        PowerVerb::Reset => PowerAction::Reset,
    };
    PowerRequest {
        action,
        mode: PowerMode::Auto,
        timeout_secs: a.timeout,
        fanout: a.fanout as usize,
    }
}

/// The request `reboot` or `shutdown` sends.
pub(crate) fn soft_request(action: PowerAction, a: &SoftArgs) -> PowerRequest {
    let mode = match (a.hard, a.soft) {
        (true, _) => PowerMode::Hard,
        (_, true) => PowerMode::Soft,
        _ => PowerMode::Auto,
    };
    PowerRequest {
        action,
        mode,
        timeout_secs: a.timeout,
        fanout: a.fanout as usize,
    }
}

/// `power …`, `reboot`, `shutdown`: send the request, print the results.
pub(crate) fn run(cli: &Cli, kind: Kind, cmd: &ObjectCmd, req: &PowerRequest) -> Result<(), Fail> {
    let verb = match req.action {
        PowerAction::Reboot | PowerAction::Shutdown => req.action.as_str().to_string(),
        a => format!("power {}", a.as_str()),
    };
    nodes_only(kind, &verb)?;
    let q = cmd.target_query(kind, &verb)?;
    let reply: ActionReply = action_client(cli)?.send("POST", &format!("/node/power{q}"), req)?;
    show(cli, &verb, &reply)
}

/// `orphan`: ask the selected nodes' agents to become orphans now.
pub(crate) fn orphan(cli: &Cli, kind: Kind, cmd: &ObjectCmd) -> Result<(), Fail> {
    nodes_only(kind, "orphan")?;
    let q = cmd.target_query(kind, "orphan")?;
    let reply: ActionReply =
        action_client(cli)?.send("POST", &format!("/node/orphan{q}"), &serde_json::json!({}))?;
    show(cli, "orphan", &reply)
}

/// Print a reply (grouped, `-l` per node, or `--json`); fail naming the failed nodes.
fn show(cli: &Cli, verb: &str, reply: &ActionReply) -> Result<(), Fail> {
    if cli.json {
        output::print_json(reply);
    } else if cli.long || cli.full || cli.table {
        print!("{}", per_node(&reply.results));
    } else {
        let mut out = std::io::stdout().lock();
        for line in group_lines(&reply.results) {
            let _ = writeln!(out, "{line}");
        }
    }
    let failed: Vec<&str> = reply
        .results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Fail::Request(anyhow::anyhow!(
            "{verb} failed on {} of {} node{}: {}",
            failed.len(),
            reply.results.len(),
            if reply.results.len() == 1 { "" } else { "s" },
            hostlist::compress(&failed)
        )))
    }
}

/// One group of nodes with the same outcome.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Group<'a> {
    pub(crate) ok: bool,
    pub(crate) result: &'a str,
    pub(crate) nodes: Vec<&'a str>,
}

/// Nodes grouped by (ok, result): successes first, each kind in the order first seen.
pub(crate) fn groups(results: &[NodeOutcome]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group> = Vec::new();
    for r in results {
        match groups
            .iter_mut()
            .find(|g| g.ok == r.ok && g.result == r.result)
        {
            Some(g) => g.nodes.push(&r.name),
            None => groups.push(Group {
                ok: r.ok,
                result: &r.result,
                nodes: vec![&r.name],
            }),
        }
    }
    groups.sort_by_key(|g| !g.ok);
    groups
}

/// `ok (on) n[0-99]`, `failed (BMC timeout) n[100-103]`: one line per group.
pub(crate) fn group_lines(results: &[NodeOutcome]) -> Vec<String> {
    groups(results)
        .into_iter()
        .map(|g| {
            let status = if g.ok { "ok" } else { "failed" };
            let nodes = hostlist::compress(&g.nodes);
            if g.result.is_empty() {
                format!("{status} {nodes}")
            } else {
                format!("{status} ({}) {nodes}", g.result)
            }
        })
        .collect()
}

/// `-l`: one row per node.
pub(crate) fn per_node(results: &[NodeOutcome]) -> String {
    if results.is_empty() {
        return String::new();
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(["NODE", "OK", "RESULT", "VIA", "TIME", "DETAIL"]);
    for r in results {
        let via = match r.via {
            Via::Agent => "agent",
            Via::Bmc => "bmc",
            Via::None => "-",
        };
        t.add_row([
            r.name.clone(),
            if r.ok { "ok" } else { "failed" }.to_string(),
            r.result.clone(),
            via.to_string(),
            millis(r.millis),
            r.detail.clone().unwrap_or_default(),
        ]);
    }
    // comfy_table pads the last column; trim each line's end.
    t.to_string()
        .lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

/// `850 ms`, `12.3 s`.
pub(crate) fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, ok: bool, result: &str) -> NodeOutcome {
        NodeOutcome {
            uid: format!("u-{name}"),
            name: name.to_string(),
            ok,
            result: result.to_string(),
            via: Via::Bmc,
            detail: None,
            millis: 5,
        }
    }

    #[test]
    fn outcomes_group_as_hostlists_successes_first() {
        let mut rs: Vec<NodeOutcome> = (0..100)
            .map(|i| out(&format!("n{i}"), true, "on"))
            .collect();
        rs.insert(3, out("n100", false, "BMC timeout"));
        rs.extend((101..104).map(|i| out(&format!("n{i}"), false, "BMC timeout")));
        rs.push(out("n104", true, "off"));
        rs.push(out("n105", false, "no power_uri"));
        assert_eq!(
            group_lines(&rs),
            [
                "ok (on) n[0-99]",
                "ok (off) n104",
                "failed (BMC timeout) n[100-103]",
                "failed (no power_uri) n105",
            ]
        );
        assert_eq!(group_lines(&[out("n1", true, "")]), ["ok n1"]);
        assert!(group_lines(&[]).is_empty());
    }

    #[test]
    fn per_node_rows_and_times() {
        let mut a = out("n1", false, "BMC timeout");
        a.detail = Some("no answer from 10.0.0.1".into());
        a.millis = 30_000;
        let text = per_node(&[out("n0", true, "on"), a]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].trim_start().starts_with("NODE"), "{text}");
        assert!(
            lines[1].contains("n0") && lines[1].contains("5 ms"),
            "{text}"
        );
        assert!(
            lines[2].contains("failed") && lines[2].contains("30.0 s"),
            "{text}"
        );
        assert!(lines[2].ends_with("no answer from 10.0.0.1"), "{text}");
        assert_eq!(per_node(&[]), "");
    }

    #[test]
    fn hard_and_soft_pick_the_mode() {
        let a = |hard, soft| SoftArgs {
            hard,
            soft,
            timeout: 7,
            fanout: 3,
        };
        let r = soft_request(PowerAction::Reboot, &a(false, false));
        assert_eq!((r.mode, r.timeout_secs, r.fanout), (PowerMode::Auto, 7, 3));
        assert_eq!(
            soft_request(PowerAction::Reboot, &a(true, false)).mode,
            PowerMode::Hard
        );
        assert_eq!(
            soft_request(PowerAction::Shutdown, &a(false, true)).mode,
            PowerMode::Soft
        );
    }
}

//! The cluster's nodes as this head sees them, computed at scrape time from `status/` (the
//! same view `wulf node status` reads; nothing is done per node between scrapes).
//!
//! State comes in two forms: `wulf_node_state{node,state,reason}` = 1, one series per node
//! with its state (and down reason) as labels, for counting and alerting in PromQL; and
//! `wulf_node_state_code{node}` = 0 new, 1 booting, 2 up, 3 down, one number per node for
//! Grafana's state timeline and stat panels (value mappings turn it back into words).
//! Heartbeat figures (load, RAM, uptime, busy) are given for nodes that are up; the age of
//! the last report for every node that ever reported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use wulf_api::status::NodeStatus;
use wulf_model::Kind;

use super::{gauge, gauges};
use crate::app::App;

/// The states in `wulf_node_state_code`'s order.
pub const STATES: [&str; 4] = ["new", "booting", "up", "down"];

/// The down reasons counted in `wulf_nodes_down`.
const REASONS: [&str; 4] = [
    "boot timeout",
    "node stopped sending status",
    "clean shutdown",
    "orphaned",
];

/// Every node's status at one moment.
#[derive(Debug)]
pub struct Snapshot {
    nodes: Vec<NodeStatus>,
    now_ms: i64,
}

fn code(state: &str) -> Option<usize> {
    STATES.iter().position(|s| *s == state)
}

impl Snapshot {
    pub fn take(app: &App) -> Snapshot {
        let nodes = {
            let st = app.cache.read();
            let uids: Vec<String> = st
                .list(Kind::Node)
                .iter()
                .map(|e| e.obj.uid().to_string())
                .collect();
            app.status
                .view(&st, &uids, crate::status::Detail::Heartbeat)
        };
        Snapshot::of(nodes, crate::status::now_ms())
    }

    pub fn of(nodes: Vec<NodeStatus>, now_ms: i64) -> Snapshot {
        Snapshot { nodes, now_ms }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn up(&self) -> impl Iterator<Item = &NodeStatus> {
        self.nodes.iter().filter(|n| n.state == "up")
    }
}

fn node(n: &NodeStatus) -> [(&'static str, &str); 1] {
    [("node", n.name.as_str())]
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts = [0u64; 4];
        let mut down = [0u64; 4];
        for n in &self.nodes {
            if let Some(i) = code(&n.state) {
                counts[i] += 1;
            }
            if let Some(r) = n.down_reason.as_deref() {
                if let Some(i) = REASONS.iter().position(|x| *x == r) {
                    down[i] += 1;
                }
            }
        }
        gauges(
            &mut e,
            "wulf_nodes",
            "Nodes in each state, as this head sees them",
            STATES.iter().zip(counts).map(|(s, c)| ([("state", *s)], c)),
        )?;
        gauges(
            &mut e,
            "wulf_nodes_down",
            "Nodes down, by reason",
            REASONS.iter().zip(down).map(|(r, c)| ([("reason", *r)], c)),
        )?;
        gauge(
            &mut e,
            "wulf_nodes_busy",
            "Nodes up whose agent says they are busy (running jobs)",
            self.up().filter(|n| n.busy).count() as u64,
        )?;
        gauges(
            &mut e,
            "wulf_node_state",
            "A node's state (and down reason) as labels; always 1",
            self.nodes.iter().map(|n| {
                (
                    [
                        ("node", n.name.as_str()),
                        ("state", n.state.as_str()),
                        ("reason", n.down_reason.as_deref().unwrap_or("")),
                    ],
                    1u64,
                )
            }),
        )?;
        gauges(
            &mut e,
            "wulf_node_state_code",
            "A node's state as a number: 0 new, 1 booting, 2 up, 3 down",
            self.nodes
                .iter()
                .filter_map(|n| Some((node(n), code(&n.state)? as u64))),
        )?;
        gauges(
            &mut e,
            "wulf_node_last_report_age_seconds",
            "Seconds since the node's last status report",
            self.nodes.iter().filter_map(|n| {
                let at = n.last_report_ms?;
                Some((node(n), (self.now_ms - at).max(0) as f64 / 1000.0))
            }),
        )?;
        for (i, (name, help)) in [
            ("wulf_node_load1", "Load average over 1 minute (nodes up)"),
            ("wulf_node_load5", "Load average over 5 minutes (nodes up)"),
            (
                "wulf_node_load15",
                "Load average over 15 minutes (nodes up)",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            gauges(
                &mut e,
                name,
                help,
                self.up()
                    .filter_map(|n| Some((node(n), f64::from(n.load?[i])))),
            )?;
        }
        gauges(
            &mut e,
            "wulf_node_memory_free_bytes",
            "Free RAM the node reported (nodes up)",
            self.up().filter_map(|n| Some((node(n), n.ram_free?))),
        )?;
        gauges(
            &mut e,
            "wulf_node_memory_total_bytes",
            "Total RAM the node reported (nodes up)",
            self.up().filter_map(|n| Some((node(n), n.ram_total?))),
        )?;
        gauges(
            &mut e,
            "wulf_node_uptime_seconds",
            "The node's uptime at its last report (nodes up)",
            self.up().filter_map(|n| Some((node(n), n.last_uptime?))),
        )?;
        gauges(
            &mut e,
            "wulf_node_busy",
            "1 when the node's agent says it is busy (nodes up)",
            self.up().map(|n| (node(n), u64::from(n.busy))),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn status(i: usize, state: &str) -> NodeStatus {
        NodeStatus {
            uid: format!("uid{i}"),
            name: format!("n{i}"),
            index: i as u32,
            state: state.to_string(),
            down_reason: (state == "down").then(|| "clean shutdown".to_string()),
            last_report_ms: (state != "new").then_some(1_000_000 - 2_500),
            last_uptime: Some(3600.0),
            busy: i.is_multiple_of(2),
            load: Some([0.5, 1.25, 2.0]),
            ram_total: Some(64 << 30),
            ram_free: Some(32 << 30),
            ..Default::default()
        }
    }

    fn text(s: Snapshot) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(s));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn nodes_as_series() {
        let nodes = vec![
            status(0, "up"),
            status(1, "up"),
            status(2, "down"),
            status(3, "new"),
        ];
        let t = text(Snapshot::of(nodes, 1_000_000));
        for want in [
            "wulf_nodes{state=\"up\"} 2",
            "wulf_nodes{state=\"down\"} 1",
            "wulf_nodes{state=\"new\"} 1",
            "wulf_nodes{state=\"booting\"} 0",
            "wulf_nodes_down{reason=\"clean shutdown\"} 1",
            "wulf_nodes_busy 1",
            "wulf_node_state{node=\"n0\",state=\"up\",reason=\"\"} 1",
            "wulf_node_state{node=\"n2\",state=\"down\",reason=\"clean shutdown\"} 1",
            "wulf_node_state_code{node=\"n0\"} 2",
            "wulf_node_state_code{node=\"n3\"} 0",
            "wulf_node_last_report_age_seconds{node=\"n1\"} 2.5",
            "wulf_node_load1{node=\"n0\"} 0.5",
            "wulf_node_load5{node=\"n1\"} 1.25",
            "wulf_node_load15{node=\"n1\"} 2.0",
            "wulf_node_memory_free_bytes{node=\"n0\"} 34359738368",
            "wulf_node_memory_total_bytes{node=\"n0\"} 68719476736",
            "wulf_node_uptime_seconds{node=\"n0\"} 3600.0",
            "wulf_node_busy{node=\"n0\"} 1",
            "wulf_node_busy{node=\"n1\"} 0",
            "# TYPE wulf_node_load1 gauge",
        ] {
            assert!(t.lines().any(|l| l == want), "missing {want:?} in:\n{t}");
        }
        // A node not up carries no stale heartbeat figures; one that never reported no age.
        assert!(!t.contains("wulf_node_load1{node=\"n2\"}"), "{t}");
        assert!(
            !t.contains("wulf_node_last_report_age_seconds{node=\"n3\"}"),
            "{t}"
        );
    }

    #[test]
    fn ten_thousand_nodes_encode_quickly() {
        let nodes: Vec<NodeStatus> = (0..10_000).map(|i| status(i, "up")).collect();
        let t = std::time::Instant::now();
        let out = text(Snapshot::of(nodes, 1_000_000));
        let took = t.elapsed();
        assert_eq!(out.matches("wulf_node_load1{").count(), 10_000);
        // Debug builds are slower; the release figure is in docs/admin/monitoring.md.
        assert!(
            took < std::time::Duration::from_secs(2),
            "10,000 nodes took {took:?}"
        );
        eprintln!("10,000 nodes: {} bytes encoded in {took:?}", out.len());
    }
}

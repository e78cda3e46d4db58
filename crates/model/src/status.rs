//! Node state, derived when it is read from the times the reading head received things
//! (DESIGN.md: "down" is never written anywhere).

use std::fmt;

/// The state of a node as a head sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeState {
    /// Never booted (no boot script served, no report).
    New,
    /// Served a boot script, no report since.
    Booting,
    /// Reported within its window.
    Up,
    /// Not up; see [`DownReason`].
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::New => "new",
            NodeState::Booting => "booting",
            NodeState::Up => "up",
            NodeState::Down => "down",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownReason {
    /// Served a boot script but no report came within `_boot_timeout`.
    BootTimeout,
    /// Reported before, but nothing for longer than its window.
    StoppedSending,
    /// Its agent said it was shutting down.
    CleanShutdown,
    /// Its agent said it became an orphan on request (`wulf node orphan`).
    Orphaned,
}

impl DownReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DownReason::BootTimeout => "boot timeout",
            DownReason::StoppedSending => "node stopped sending status",
            DownReason::CleanShutdown => "clean shutdown",
            DownReason::Orphaned => "orphaned",
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The receive times a state is derived from (unix ms, all by the same head's clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusTimes {
    /// When the node was last served a boot script.
    pub booted_ms: Option<i64>,
    /// When its last report arrived.
    pub report_ms: Option<i64>,
    /// The interval (s) the last report said the next one would follow in.
    pub interval_secs: u32,
    /// The last report was a clean-shutdown notice.
    pub shutdown: bool,
    /// The last report said the node became an orphan.
    pub orphan: bool,
    /// Extra time (ms) added to the up window: when these times were received by another
    /// head and reach this one only as often as that head stores them.
    pub slack_ms: i64,
}

/// How long after a report a node still counts as up: three missed intervals, and never less
/// than the interval plus five seconds (network and scheduling slack).
pub fn up_window_ms(interval_secs: u32) -> i64 {
    let i = i64::from(interval_secs.max(1)) * 1000;
    (3 * i).max(i + 5000)
}

/// Derive a node's state at `now_ms`. `boot_timeout_secs` is the node's `_boot_timeout`.
pub fn derive_state(
    t: &StatusTimes,
    now_ms: i64,
    boot_timeout_secs: u32,
) -> (NodeState, Option<DownReason>) {
    let report_current = match (t.report_ms, t.booted_ms) {
        (Some(r), Some(b)) => r >= b,
        (Some(_), None) => true,
        _ => false,
    };
    if report_current {
        let r = t.report_ms.unwrap_or_default();
        if t.orphan {
            (NodeState::Down, Some(DownReason::Orphaned))
        } else if t.shutdown {
            (NodeState::Down, Some(DownReason::CleanShutdown))
        } else if now_ms - r <= up_window_ms(t.interval_secs) + t.slack_ms.max(0) {
            (NodeState::Up, None)
        } else {
            (NodeState::Down, Some(DownReason::StoppedSending))
        }
    } else if let Some(b) = t.booted_ms {
        if now_ms - b <= i64::from(boot_timeout_secs) * 1000 {
            (NodeState::Booting, None)
        } else {
            (NodeState::Down, Some(DownReason::BootTimeout))
        }
    } else {
        (NodeState::New, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(booted: Option<i64>, report: Option<i64>, shutdown: bool) -> StatusTimes {
        StatusTimes {
            booted_ms: booted,
            report_ms: report,
            interval_secs: 10,
            shutdown,
            orphan: false,
            slack_ms: 0,
        }
    }

    #[test]
    fn orphan_is_down_at_once_until_it_reports_again() {
        let mut t = times(Some(1), Some(2), false);
        t.orphan = true;
        assert_eq!(
            derive_state(&t, 3, 600),
            (NodeState::Down, Some(DownReason::Orphaned))
        );
        t.orphan = false;
        assert_eq!(derive_state(&t, 3, 600).0, NodeState::Up);
    }

    #[test]
    fn never_seen_is_new() {
        assert_eq!(
            derive_state(&times(None, None, false), 5, 600).0,
            NodeState::New
        );
    }

    #[test]
    fn booting_then_timeout() {
        let t = times(Some(1000), None, false);
        assert_eq!(derive_state(&t, 2000, 60), (NodeState::Booting, None));
        assert_eq!(
            derive_state(&t, 1000 + 60_001, 60),
            (NodeState::Down, Some(DownReason::BootTimeout))
        );
    }

    #[test]
    fn up_until_window_passes() {
        let t = times(Some(0), Some(1000), false);
        assert_eq!(derive_state(&t, 1000 + 30_000, 600).0, NodeState::Up);
        assert_eq!(
            derive_state(&t, 1000 + 30_001, 600),
            (NodeState::Down, Some(DownReason::StoppedSending))
        );
    }

    #[test]
    fn short_intervals_get_slack() {
        assert_eq!(up_window_ms(1), 6000);
        assert_eq!(up_window_ms(2), 7000);
        assert_eq!(up_window_ms(10), 30_000);
        assert_eq!(up_window_ms(0), 6000);
    }

    #[test]
    fn another_heads_times_get_slack() {
        let mut t = times(Some(0), Some(1000), false);
        t.slack_ms = 60_000;
        assert_eq!(derive_state(&t, 1000 + 90_000, 600).0, NodeState::Up);
        assert_eq!(derive_state(&t, 1000 + 90_001, 600).0, NodeState::Down);
    }

    #[test]
    fn shutdown_is_down_at_once() {
        let t = times(Some(0), Some(1000), true);
        assert_eq!(
            derive_state(&t, 1001, 600),
            (NodeState::Down, Some(DownReason::CleanShutdown))
        );
    }

    #[test]
    fn a_new_boot_supersedes_an_old_report() {
        // Down node reboots: booting again, not down.
        let t = times(Some(50_000), Some(1000), true);
        assert_eq!(derive_state(&t, 51_000, 600).0, NodeState::Booting);
        // A report after the boot makes it up.
        let t = times(Some(50_000), Some(52_000), false);
        assert_eq!(derive_state(&t, 53_000, 600).0, NodeState::Up);
    }
}

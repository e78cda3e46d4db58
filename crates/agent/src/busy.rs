//! Busy mode: when the node is busy the agent gathers only the cheap fields.
//!
//! The first of these that has an answer decides:
//!
//! 1. the `_busy` attribute, when it is a boolean (`1/on/y/yes/t/true`, `0/off/n/no/f/false`,
//!    any case) — an administrator's word wins both ways;
//! 2. the flag file `<state-dir>/busy.flag`: present → busy (a job prologue can create it
//!    and the epilogue remove it);
//! 3. the agent's own judgement: busy when more than 75 % of all CPU time since the previous
//!    report was spent outside idle and iowait (from the `cpu` line of `/proc/stat`), or, with
//!    no previous sample yet, when the 1-minute load average is at least the number of online
//!    CPUs.

use crate::gather::CpuSample;

/// The share of all CPUs' time above which the heuristic calls the node busy.
pub const BUSY_FRACTION: f64 = 0.75;

/// The name of the flag file in the state directory.
pub const FLAG_FILE: &str = "busy.flag";

/// What decided busy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The `_busy` attribute.
    Attribute,
    /// The flag file.
    FlagFile,
    /// The agent's heuristic.
    Heuristic,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Attribute => "the _busy attribute",
            Reason::FlagFile => "the busy flag file",
            Reason::Heuristic => "the CPU load",
        })
    }
}

/// Decide busy mode. `flag_exists` and `heuristic` are only called when needed, so a node
/// whose `_busy` is set never looks at the flag file or `/proc/stat`.
///
/// An attribute that is not a boolean is ignored (the head rejects such values, so this only
/// happens with a hand-edited database); `bad_attribute` is then set.
pub fn decide(
    attribute: Option<&str>,
    flag_exists: impl FnOnce() -> bool,
    heuristic: impl FnOnce() -> bool,
) -> Decision {
    let mut bad_attribute = false;
    if let Some(v) = attribute {
        match wulf_model::parse_bool(v) {
            Some(b) => {
                return Decision {
                    busy: b,
                    reason: Reason::Attribute,
                    bad_attribute,
                }
            }
            None => bad_attribute = true,
        }
    }
    if flag_exists() {
        return Decision {
            busy: true,
            reason: Reason::FlagFile,
            bad_attribute,
        };
    }
    Decision {
        busy: heuristic(),
        reason: Reason::Heuristic,
        bad_attribute,
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub busy: bool,
    pub reason: Reason,
    /// `_busy` was set but is not a boolean.
    pub bad_attribute: bool,
}

/// The agent's own judgement from two `/proc/stat` samples, falling back to the load average
/// when there is no usable previous sample.
pub fn heuristic(prev: Option<CpuSample>, now: Option<CpuSample>, load1: f32, cpus: u32) -> bool {
    match (prev, now) {
        (Some(p), Some(n)) if n.total > p.total => {
            let busy = n.busy.saturating_sub(p.busy) as f64;
            let total = (n.total - p.total) as f64;
            busy / total > BUSY_FRACTION
        }
        _ => load1 >= cpus.max(1) as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        panic!("must not be consulted")
    }

    #[test]
    fn decision_table() {
        // The attribute decides when it is a boolean, in any spelling and case, either way.
        for v in ["1", "on", "Y", "yes", "t", "TRUE", " true "] {
            let d = decide(Some(v), never, never);
            assert_eq!(
                (d.busy, d.reason, d.bad_attribute),
                (true, Reason::Attribute, false),
                "{v}"
            );
        }
        for v in ["0", "OFF", "n", "No", "f", "false"] {
            let d = decide(Some(v), never, never);
            assert_eq!((d.busy, d.reason), (false, Reason::Attribute), "{v}");
        }
        // _busy=no wins over the flag file and the heuristic.
        assert!(!decide(Some("no"), || true, || true).busy);
        // No attribute: the flag file, then the heuristic.
        let d = decide(None, || true, never);
        assert_eq!((d.busy, d.reason), (true, Reason::FlagFile));
        let d = decide(None, || false, || true);
        assert_eq!((d.busy, d.reason), (true, Reason::Heuristic));
        let d = decide(None, || false, || false);
        assert_eq!((d.busy, d.reason), (false, Reason::Heuristic));
        // A non-boolean attribute is ignored and reported.
        let d = decide(Some("sometimes"), || true, never);
        assert_eq!(
            (d.busy, d.reason, d.bad_attribute),
            (true, Reason::FlagFile, true)
        );
        let d = decide(Some(""), || false, || false);
        assert_eq!(
            (d.busy, d.reason, d.bad_attribute),
            (false, Reason::Heuristic, true)
        );
    }

    #[test]
    fn heuristic_from_cpu_time() {
        let s = |busy, total| Some(CpuSample { busy, total });
        // 80 % of all CPU time busy: busy.
        assert!(heuristic(s(0, 0), s(80, 100), 0.0, 4));
        // exactly 75 %: not busy.
        assert!(!heuristic(s(0, 0), s(75, 100), 0.0, 4));
        // 10 % busy, even with a high load average: not busy (the samples decide).
        assert!(!heuristic(s(100, 1000), s(110, 1100), 99.0, 4));
        // No previous sample: the 1-minute load against the CPU count.
        assert!(heuristic(None, s(0, 100), 4.0, 4));
        assert!(!heuristic(None, s(100, 100), 3.9, 4));
        // No time passed between samples, or /proc/stat unreadable: the load decides.
        assert!(!heuristic(s(5, 100), s(5, 100), 0.5, 1));
        assert!(heuristic(s(5, 100), None, 1.0, 1));
        // Counters that step back (iowait may) do not underflow.
        assert!(!heuristic(s(50, 100), s(40, 200), 0.0, 2));
    }
}

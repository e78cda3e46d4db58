//! wulf-agent: runs on every compute node, reports the node's status to its head and carries
//! out the head's commands (exec, soft reboot and shutdown, orphan).
//!
//! The binary (`src/main.rs`) parses flags and runs [`agent::Agent`]; the modules here are
//! the pieces it is made of, each testable on its own:
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | head URLs, node UID and enrollment token from flags, `/proc/cmdline`, `agent.conf` |
//! | [`enroll`] | the node's credential: traded for the boot's enrollment token, kept in `/run/wulf/agent.cred` |
//! | [`gather`] | the per-report fields, read from `/proc` and a few syscalls |
//! | [`hardware`] | the one-off hardware inventory from `/proc/cpuinfo` and `/sys` |
//! | [`busy`] | busy mode: the `_busy` attribute, the flag file, the agent's own heuristic |
//! | [`cpuset`] | `_status_cpuset`: CPU lists and `sched_setaffinity` |
//! | [`attrfile`] | `attributes.ini`: rendering, parsing, atomic rewrite when changed |
//! | [`cost`] | the agent's own CPU and wall time |
//! | [`send`] | posting a report to the heads, in order, with short timeouts |
//! | [`signals`] | SIGTERM/SIGINT as a flag and a pipe the sleep between reports wakes on |
//! | [`tls`] | HTTPS to the heads, checked against the cluster CA the boot pinned (`wulf.ca=`) |
//! | [`commands`] | the command channel: long polls, checks, results; reboot, shutdown, orphan |
//! | [`exec`] | running one command: no shell, stdin, capped output, timeout kills its group |
//! | [`agent`] | the report cycle, the loop around it, the orphan's decisions |

pub mod agent;
pub mod attrfile;
pub mod busy;
pub mod commands;
pub mod config;
pub mod cost;
pub mod cpuset;
pub mod enroll;
pub mod exec;
pub mod gather;
pub mod hardware;
pub mod send;
pub mod signals;
pub mod standalone;
pub mod tls;

/// The agent's version, sent in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use wulf_model::DEFAULT_STATUS_SECS;

//! Acting on nodes: power, soft reboot/shutdown, exec, orphan (`POST /api/v1/node/{power,exec,orphan}`).

use serde::{Deserialize, Serialize};

/// What `POST /api/v1/node/power?ids=SEL` does to each selected node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Ask the BMC whether the node is on.
    Status,
    On,
    Off,
    /// Off, then on.
    Cycle,
    /// Hard reset without removing power.
    Reset,
    /// Clean reboot through the agent, falling back to the BMC (`cycle`).
    Reboot,
    /// Clean poweroff through the agent, falling back to the BMC (`off`).
    Shutdown,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Status => "status",
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
            PowerAction::Reset => "reset",
            PowerAction::Reboot => "reboot",
            PowerAction::Shutdown => "shutdown",
        }
    }
    /// True for reboot and shutdown, which go through the agent first.
    pub fn is_soft_capable(self) -> bool {
        matches!(self, PowerAction::Reboot | PowerAction::Shutdown)
    }
}

/// How `reboot` and `shutdown` are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PowerMode {
    /// Ask the agent; fall back to the BMC when the node has not gone down within the timeout.
    #[default]
    Auto,
    /// Ask the agent only; never touch the BMC.
    Soft,
    /// Straight to the BMC.
    Hard,
}

fn default_timeout() -> u64 {
    30
}
fn default_fanout() -> usize {
    64
}

/// Body of `POST /api/v1/node/power?ids=SEL`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    pub action: PowerAction,
    #[serde(default)]
    pub mode: PowerMode,
    /// Seconds a soft request may take before the BMC fallback, and the bound on each BMC call.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How many nodes are acted on at once.
    #[serde(default = "default_fanout")]
    pub fanout: usize,
}

/// Which path carried out an action on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The node's agent (soft).
    Agent,
    /// The node's BMC (hard).
    Bmc,
    /// Nothing was done (bad input, skipped, no way to reach the node).
    None,
}

/// One node's result of a power or orphan request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub uid: String,
    pub name: String,
    pub ok: bool,
    /// What happened, short and the same for every node it happened to: `on`, `off`,
    /// `rebooted`, `soft reboot`, `BMC timeout`, …; results are grouped by it.
    pub result: String,
    pub via: Via,
    /// Longer text for this node (the BMC's error message, why the agent was skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Milliseconds the node took.
    #[serde(default)]
    pub millis: u64,
}

/// Answer of `POST /api/v1/node/power` and `POST /api/v1/node/orphan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionReply {
    pub results: Vec<NodeOutcome>,
}

/// Body of `POST /api/v1/node/exec?ids=SEL`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments (not run through a shell).
    pub argv: Vec<String>,
    /// Sent to the command's standard input on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Seconds the command may run on a node before it is killed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How many nodes run it at once.
    #[serde(default = "default_fanout")]
    pub fanout: usize,
    /// Skip nodes that are not up instead of failing them.
    #[serde(default)]
    pub up_only: bool,
}

/// One node's result of an exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecOutcome {
    pub uid: String,
    pub name: String,
    /// The command's exit code; `None` when it did not run or was killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Why the command did not run or finish (node down, timeout, agent unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when `up_only` skipped the node.
    #[serde(default)]
    pub skipped: bool,
    /// Milliseconds from the head sending the command to its result.
    #[serde(default)]
    pub millis: u64,
}

impl ExecOutcome {
    /// Ran and exited 0.
    pub fn ok(&self) -> bool {
        self.exit == Some(0) && self.error.is_none()
    }
}

/// Answer of `POST /api/v1/node/exec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecReply {
    pub results: Vec<ExecOutcome>,
}

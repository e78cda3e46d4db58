//! Head logs as the API serves them: `GET /api/v1/log` (role viewer).
//!
//! Every head keeps a selection of its log lines (AUDIT, ERROR and WARNING by default) in the
//! shared database, and writes every head's lines to `LOG_DIR/head_<NAME>.log`. The query
//! parameters are [`LogQuery`]; the answer is a [`LogPage`].

use serde::{Deserialize, Serialize};

/// Log levels, tersest first, as ClusterWare names them. A head logging at a level writes the
/// lines of that level and of every level before it in this list.
pub const LEVELS: [&str; 5] = ["AUDIT", "ERROR", "WARNING", "INFO", "DEBUG"];

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Unix time (s, with fractions) the head wrote it.
    pub ts: f64,
    /// The head that wrote it.
    pub head: String,
    /// One of [`LEVELS`].
    pub level: String,
    /// The part of wulfd it comes from (`wulfd::dhcp`, `audit`, …).
    pub target: String,
    /// The line as the head's log file shows it after the level (message and fields).
    pub message: String,
    /// The nodes it names (a hostlist), when it names any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
}

/// `GET /api/v1/log` query parameters; all optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only this head's lines (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Only lines at or after this Unix time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// Only lines at this level or a terser one (one of [`LEVELS`], any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Only lines naming one of these nodes (a selector: names, hostlists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// At most this many lines, the newest (default 1,000, at most 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only lines after this cursor (from an earlier [`LogPage`]), to follow the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// With `after`: wait up to this many seconds for a new line before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

/// The answer to `GET /api/v1/log`: lines oldest first, and the cursor to ask for the lines
/// after them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub cursor: String,
}

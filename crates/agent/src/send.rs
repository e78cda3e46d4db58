//! Posting a report to the heads: `POST {head}/api/v1/node/status` with the bearer token
//! `node:<uid>:<credential>`, trying the heads in order with short timeouts.
//!
//! The head that answered last is tried first next time; when it fails the others are tried
//! in order within the same cycle. Heads named in the answer (`heads`) that the agent was not
//! configured with are added after the configured ones, so the agent can fail over to them.

use std::time::Duration;

use tracing::{debug, info, warn};
use wulf_api::status::{node_token, ReportReply, StatusReport};
use wulf_api::ErrorBody;

use crate::config::normalize_head;

/// Connecting to a head may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole report (connect, send, answer) may take this long.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The last report, on SIGTERM, may take this long per head.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The path of the report endpoint under a head's base URL.
pub const PATH: &str = "/api/v1/node/status";

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{head} refused the report (HTTP {status}): {message}")]
    Status {
        head: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach {head}: {message}")]
    Transport { head: String, message: String },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("bad answer from {head}: {message}")]
    Decode { head: String, message: String },
    #[error("no head took the report: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<SendError>),
}

/// Sends reports.
pub struct Sender {
    configured: Vec<String>,
    heads: Vec<String>,
    current: usize,
    auth: String,
}

/// The HTTP agent for one report to `head` (TLS checked against the cluster CA, see
/// [`crate::tls`]).
fn agent(head: &str, timeout: Duration) -> Result<ureq::Agent, crate::tls::TlsError> {
    let b = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        // A new connection per report: a pooled one the head closed while the agent slept
        // would make the (non-idempotent) POST fail.
        .max_idle_connections(0)
        .user_agent(concat!("wulf-agent/", env!("CARGO_PKG_VERSION")));
    crate::tls::trust().agent(head, b)
}

impl Sender {
    /// `heads` are normalised base URLs (see [`crate::config`]).
    pub fn new(heads: Vec<String>, node: &str, cred: &str) -> Sender {
        Sender {
            configured: heads.clone(),
            heads,
            current: 0,
            auth: format!("Bearer {}", node_token(node, cred)),
        }
    }

    /// The heads in the order they are tried (configured first, then learned).
    pub fn heads(&self) -> &[String] {
        &self.heads
    }

    /// The head tried first.
    pub fn current(&self) -> &str {
        self.heads.get(self.current).map_or("", String::as_str)
    }

    /// Send a report; `short` uses the shutdown timeout. Returns the answer and the head
    /// that gave it.
    pub fn send(
        &mut self,
        report: &StatusReport,
        short: bool,
    ) -> Result<(ReportReply, String), SendError> {
        let body = serde_json::to_vec(report).map_err(|e| SendError::Decode {
            head: String::new(),
            message: e.to_string(),
        })?;
        let mut errors = Vec::new();
        for i in 0..self.heads.len() {
            let idx = (self.current + i) % self.heads.len();
            let head = &self.heads[idx];
            match self.post(head, &body, short) {
                Ok(reply) => {
                    if idx != self.current {
                        info!("reporting to {head} now");
                    }
                    let head = head.clone();
                    self.current = idx;
                    return Ok((reply, head));
                }
                Err(e) => {
                    if self.heads.len() > 1 {
                        warn!("{e}");
                    }
                    errors.push(e);
                }
            }
        }
        match errors.len() {
            1 => Err(errors.remove(0)),
            _ => Err(SendError::AllFailed(errors)),
        }
    }

    fn post(&self, head: &str, body: &[u8], short: bool) -> Result<ReportReply, SendError> {
        let url = format!("{head}{PATH}");
        debug!("POST {url} ({} bytes)", body.len());
        let agent = agent(head, if short { SHUTDOWN_TIMEOUT } else { TIMEOUT })?;
        let r = agent
            .post(&url)
            .set("Authorization", &self.auth)
            .set("Content-Type", "application/json")
            .send_bytes(body);
        let resp = match r {
            Ok(resp) => resp,
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let message = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => b.error,
                    Err(_) if text.trim().is_empty() => match status {
                        401 | 403 => "the credential was not accepted for this node".into(),
                        _ => "no details".into(),
                    },
                    Err(_) => text.trim().chars().take(200).collect(),
                };
                return Err(SendError::Status {
                    head: head.to_string(),
                    status,
                    message,
                });
            }
            Err(ureq::Error::Transport(t)) => {
                // ureq's message starts with the URL, which the error already names.
                let text = t.to_string();
                let message = text
                    .strip_prefix(&format!("{url}: "))
                    .unwrap_or(&text)
                    .to_string();
                return Err(SendError::Transport {
                    head: head.to_string(),
                    message,
                });
            }
        };
        let text = resp.into_string().map_err(|e| SendError::Transport {
            head: head.to_string(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| SendError::Decode {
            head: head.to_string(),
            message: e.to_string(),
        })
    }

    /// Take the heads a head named in its answer: configured heads first, then those.
    pub fn learn(&mut self, advertised: &[String]) {
        let mut heads = self.configured.clone();
        let pinned = crate::tls::trust().pin().is_some();
        for h in advertised {
            match normalize_head(h) {
                // Without a pin an https head could not be checked: not one to fail over to.
                Ok(h) if h.starts_with("https://") && !pinned => {
                    debug!("ignoring an advertised head: {h} needs a pin of the cluster CA")
                }
                Ok(h) if !heads.contains(&h) => heads.push(h),
                Ok(_) => {}
                Err(e) => debug!("ignoring an advertised head: {e}"),
            }
        }
        if heads != self.heads {
            let current = self.current().to_string();
            self.current = heads.iter().position(|h| *h == current).unwrap_or(0);
            debug!("heads now {}", heads.join(","));
            self.heads = heads;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_heads_come_after_configured_ones() {
        let mut s = Sender::new(vec!["http://a".into(), "http://b".into()], "n", "c");
        assert_eq!(s.auth, "Bearer node:n:c");
        s.current = 1;
        s.learn(&[
            "http://c/".into(),
            "http://b".into(),
            "https://unpinned".into(),
        ]);
        assert_eq!(s.heads(), ["http://a", "http://b", "http://c"]);
        assert_eq!(s.current(), "http://b");
        // The list is replaced, not accumulated.
        s.learn(&["http://d".into()]);
        assert_eq!(s.heads(), ["http://a", "http://b", "http://d"]);
        s.current = 2;
        s.learn(&[]);
        assert_eq!(s.heads(), ["http://a", "http://b"]);
        assert_eq!(s.current(), "http://a");
    }

    #[test]
    fn unreachable_heads_fail_fast_with_every_error() {
        // Port 1 on loopback: connection refused at once.
        let mut s = Sender::new(
            vec!["http://127.0.0.1:1".into(), "http://127.0.0.2:1".into()],
            "n",
            "c",
        );
        let t = std::time::Instant::now();
        let e = s
            .send(&StatusReport::default(), false)
            .expect_err("refused");
        assert!(t.elapsed() < TIMEOUT);
        let msg = e.to_string();
        assert!(
            msg.starts_with("no head took the report: cannot reach http://127.0.0.1:1"),
            "{msg}"
        );
        assert!(msg.contains("cannot reach http://127.0.0.2:1"), "{msg}");
    }
}

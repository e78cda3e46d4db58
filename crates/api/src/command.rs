//! The head→agent command channel.
//!
//! Only the node opens connections: its agent long-polls `GET /api/v1/node/commands?wait=SECS`
//! on the head it reports to, with its node token (`node:<uid>:<cred>`), and posts each
//! result to `POST /api/v1/node/commands/result` with the same token. The head answers a poll
//! only with commands addressed to the token's node, and accepts a result only for a command
//! it sent to that node, so one node can neither receive nor answer another's commands.
//!
//! The head signs every command with HMAC-SHA256 keyed by the node's credential, which only
//! the node and the heads (who derive it from the cluster's node secret) know; the agent runs
//! a command only when the signature, its node UID and its deadline check out and it has not
//! seen the command's id before. So a stranger who can answer the agent's HTTP requests
//! cannot make it run anything.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What the head asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "snake_case")]
pub enum Order {
    /// Run a program (no shell) and send back its output and exit code.
    Exec {
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin: Option<String>,
        timeout_secs: u64,
    },
    /// Reboot cleanly.
    Reboot,
    /// Power off cleanly.
    Shutdown,
    /// Become an orphan now: stop reporting and apply `_orphan_policy`.
    Orphan,
}

impl Order {
    pub fn name(&self) -> &'static str {
        match self {
            Order::Exec { .. } => "exec",
            Order::Reboot => "reboot",
            Order::Shutdown => "shutdown",
            Order::Orphan => "orphan",
        }
    }
}

/// One command, as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique (random, 128 bits hex).
    pub id: String,
    /// The node's UID.
    pub node: String,
    /// The head that sent it.
    pub head: String,
    /// Unix seconds after which the agent must not start it.
    pub deadline: u64,
    #[serde(flatten)]
    pub order: Order,
    /// Hex HMAC-SHA256 over [`Command::signed_bytes`], keyed by the node credential.
    pub sig: String,
}

impl Command {
    /// The bytes the signature covers: every field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        for part in [&self.id, &self.node, &self.head] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(self.deadline.to_string().as_bytes());
        out.push(0);
        out.extend_from_slice(&serde_json::to_vec(&self.order).unwrap_or_default());
        out
    }

    fn mac(&self, credential: &str) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(credential.as_bytes()).ok()?;
        mac.update(&self.signed_bytes());
        Some(mac)
    }

    /// Sets `sig` for the node whose credential is given.
    pub fn sign(&mut self, credential: &str) {
        self.sig = self
            .mac(credential)
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default();
    }

    /// True when `sig` was made with this credential over these fields (constant time).
    pub fn verify(&self, credential: &str) -> bool {
        let (Some(mac), Ok(sig)) = (self.mac(credential), hex::decode(&self.sig)) else {
            return false;
        };
        mac.verify_slice(&sig).is_ok()
    }
}

/// `POST /api/v1/node/commands/result`: what became of one command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    /// Exit code of an exec; 0 when a reboot/shutdown/orphan was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Why it did not run or finish (bad signature, timeout, program not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Largest stdout or stderr an agent sends back for one command; longer output is cut
/// and ends with [`TRUNCATED`].
pub const MAX_OUTPUT: usize = 1 << 20;
/// Appended to output cut at [`MAX_OUTPUT`].
pub const TRUNCATED: &str = "\n[output truncated at 1 MiB]\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command {
            id: "abc".into(),
            node: "n1".into(),
            head: "h".into(),
            deadline: 99,
            order: Order::Exec {
                argv: vec!["echo".into(), "hi".into()],
                stdin: None,
                timeout_secs: 5,
            },
            sig: String::new(),
        }
    }

    #[test]
    fn signature_covers_every_field() {
        let mut c = cmd();
        c.sign("cred");
        assert!(c.verify("cred"));
        assert!(!c.verify("other"));
        let json = serde_json::to_string(&c).unwrap();
        let back: Command = serde_json::from_str(&json).unwrap();
        assert!(back.verify("cred"), "{json}");
        for tamper in [
            |c: &mut Command| c.node = "n2".into(),
            |c: &mut Command| c.id = "abd".into(),
            |c: &mut Command| c.deadline = 100,
            |c: &mut Command| c.head = "x".into(),
            |c: &mut Command| c.order = Order::Reboot,
        ] {
            let mut t = back.clone();
            tamper(&mut t);
            assert!(!t.verify("cred"));
        }
        let mut bad = back;
        bad.sig = "zz".into();
        assert!(!bad.verify("cred"));
    }
}

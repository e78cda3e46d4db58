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

pub mod orphan;

use std::collections::{HashSet, VecDeque};

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

/// How far the node's clock may be behind the head's: a command is still started this many
/// seconds after its deadline by the node's clock. The head sets deadlines only seconds ahead
/// (the time an agent has to pick a command up), so a node whose clock runs more than this
/// ahead of the head's refuses every command as expired: keep node clocks in step (NTP).
pub const CLOCK_SKEW_SECS: u64 = 30;

/// How many accepted command ids a [`Checker`] remembers to refuse replays. A command can only
/// be replayed until its deadline (plus [`CLOCK_SKEW_SECS`]) passes, and no node is sent
/// anywhere near this many commands in that time.
pub const SEEN_IDS: usize = 1024;

/// Why a node refused a command. The text is what goes back to the head as the result's
/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: the command is for node {0}, not this one")]
    WrongNode(String),
    #[error("refused: bad signature (not signed with this node's credential)")]
    BadSignature,
    #[error("refused: expired (deadline {deadline}, node clock {now}; clocks out of step by more than {CLOCK_SKEW_SECS} s?)")]
    Expired { deadline: u64, now: u64 },
    #[error("refused: command {0} was already run (replay)")]
    Replay(String),
}

/// What a node checks before it runs a command: addressed to it, signed with its credential,
/// deadline not passed (allowing [`CLOCK_SKEW_SECS`]), and not seen before (the last
/// [`SEEN_IDS`] accepted ids). Used by wulf-agent and by `wulf sim`'s nodes.
#[derive(Debug)]
pub struct Checker {
    node: String,
    credential: String,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Checker {
    pub fn new(node: &str, credential: &str) -> Checker {
        Checker {
            node: node.to_string(),
            credential: credential.to_string(),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Check `cmd` at `now` (Unix seconds, this node's clock). An accepted command's id is
    /// remembered, so the same command is refused the next time.
    pub fn check(&mut self, cmd: &Command, now: u64) -> Result<(), Refusal> {
        if cmd.node != self.node {
            return Err(Refusal::WrongNode(cmd.node.clone()));
        }
        if !cmd.verify(&self.credential) {
            return Err(Refusal::BadSignature);
        }
        if now > cmd.deadline.saturating_add(CLOCK_SKEW_SECS) {
            return Err(Refusal::Expired {
                deadline: cmd.deadline,
                now,
            });
        }
        if self.seen.contains(&cmd.id) {
            return Err(Refusal::Replay(cmd.id.clone()));
        }
        if self.order.len() >= SEEN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(cmd.id.clone());
        self.order.push_back(cmd.id.clone());
        Ok(())
    }
}

/// Cut `bytes` of a command's output to [`MAX_OUTPUT`], ending a cut one with [`TRUNCATED`],
/// as text (invalid UTF-8 replaced).
pub fn output_text(bytes: &[u8], truncated: bool) -> String {
    let cut = bytes.len() > MAX_OUTPUT;
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned();
    if cut || truncated {
        s.push_str(TRUNCATED);
    }
    s
}

/// The current time as Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

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

    fn signed(id: &str, node: &str, deadline: u64, cred: &str) -> Command {
        let mut c = cmd();
        c.id = id.into();
        c.node = node.into();
        c.deadline = deadline;
        c.sign(cred);
        c
    }

    #[test]
    fn the_checker_refuses_what_a_node_must_not_run() {
        let mut k = Checker::new("n1", "cred");
        assert_eq!(k.check(&signed("a", "n1", 100, "cred"), 50), Ok(()));
        // Replays are refused, before and after the deadline.
        assert_eq!(
            k.check(&signed("a", "n1", 100, "cred"), 60),
            Err(Refusal::Replay("a".into()))
        );
        // Another node's command, even correctly signed for it.
        assert_eq!(
            k.check(&signed("b", "n2", 100, "cred"), 50),
            Err(Refusal::WrongNode("n2".into()))
        );
        // Signed with another credential, or tampered with after signing.
        assert_eq!(
            k.check(&signed("c", "n1", 100, "other"), 50),
            Err(Refusal::BadSignature)
        );
        let mut t = signed("d", "n1", 100, "cred");
        t.order = Order::Reboot;
        assert_eq!(k.check(&t, 50), Err(Refusal::BadSignature));
        // Deadlines allow for clock skew, then expire.
        assert_eq!(
            k.check(&signed("e", "n1", 100, "cred"), 100 + CLOCK_SKEW_SECS),
            Ok(())
        );
        let late = k.check(&signed("f", "n1", 100, "cred"), 101 + CLOCK_SKEW_SECS);
        assert_eq!(
            late,
            Err(Refusal::Expired {
                deadline: 100,
                now: 101 + CLOCK_SKEW_SECS
            })
        );
        assert!(late
            .unwrap_err()
            .to_string()
            .starts_with("refused: expired"));
        // Refused commands are not remembered: the genuine one still runs.
        assert_eq!(k.check(&signed("c", "n1", 100, "cred"), 50), Ok(()));
    }

    #[test]
    fn the_checker_remembers_the_last_ids() {
        let mut k = Checker::new("n1", "cred");
        for i in 0..SEEN_IDS + 1 {
            assert_eq!(
                k.check(&signed(&i.to_string(), "n1", 100, "cred"), 0),
                Ok(())
            );
        }
        assert_eq!(k.seen.len(), SEEN_IDS);
        // The oldest was forgotten, the newest is remembered.
        assert_eq!(k.check(&signed("0", "n1", 100, "cred"), 0), Ok(()));
        assert!(k
            .check(&signed(&SEEN_IDS.to_string(), "n1", 100, "cred"), 0)
            .is_err());
    }

    #[test]
    fn output_is_capped() {
        assert_eq!(output_text(b"hi\n", false), "hi\n");
        assert_eq!(output_text(b"hi", true), format!("hi{TRUNCATED}"));
        let big = vec![b'x'; MAX_OUTPUT + 10];
        let s = output_text(&big, false);
        assert_eq!(s.len(), MAX_OUTPUT + TRUNCATED.len());
        assert!(s.ends_with(TRUNCATED));
    }
}

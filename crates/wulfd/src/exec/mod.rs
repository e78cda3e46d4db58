//! The head→agent command channel (exec, soft reboot/shutdown, orphan).
//!
//! Nodes open every connection: each agent long-polls `GET /api/v1/node/commands` on the head
//! it reports to and posts results back, both with its node token. This head keeps, per node,
//! the commands waiting for its next poll, and per command the caller waiting for the result.
//! Commands are signed with the node's credential (see `wulf_api::command`), so the agent
//! knows they come from a head. See docs/decisions.md, "The command channel".

pub mod routes;
pub mod soft;

pub use soft::{soft_power, SoftOutcome};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, Notify};
use wulf_api::command::{Command, CommandResult, Order};

/// A poll seen this recently counts as the agent being connected, even between two polls.
const POLL_FRESH: Duration = Duration::from_secs(40);
/// Longest long poll an agent may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Why a command did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the agent is not connected to this head for commands")]
    NotConnected,
    #[error("the agent did not pick up the command within {0} s")]
    NotPickedUp(u64),
    #[error("no result from the agent within {0} s")]
    NoResult(u64),
}

#[derive(Default)]
struct NodeChan {
    queue: VecDeque<Command>,
    notify: Arc<Notify>,
    /// Polls open now.
    polling: usize,
    last_poll: Option<Instant>,
}

struct Pending {
    node: String,
    delivered: bool,
    tx: oneshot::Sender<CommandResult>,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, NodeChan>,
    pending: HashMap<String, Pending>,
}

/// The commands waiting for nodes and the results waited for.
#[derive(Default)]
pub struct Commands {
    inner: Mutex<Inner>,
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Removes a node's open poll when the poll ends, however it ends.
pub struct PollGuard<'a> {
    commands: &'a Commands,
    node: String,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.commands.lock();
        if let Some(c) = inner.nodes.get_mut(&self.node) {
            c.polling = c.polling.saturating_sub(1);
            c.last_poll = Some(Instant::now());
        }
    }
}

impl Commands {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the node's agent is polling this head for commands.
    pub fn connected(&self, node: &str) -> bool {
        let inner = self.lock();
        inner
            .nodes
            .get(node)
            .is_some_and(|c| c.polling > 0 || c.last_poll.is_some_and(|t| t.elapsed() < POLL_FRESH))
    }

    /// Start a poll by `node`: the guard marks it open until dropped.
    pub fn poll_started(&self, node: &str) -> (PollGuard<'_>, Arc<Notify>) {
        let mut inner = self.lock();
        let c = inner.nodes.entry(node.to_string()).or_default();
        c.polling += 1;
        c.last_poll = Some(Instant::now());
        let notify = c.notify.clone();
        (
            PollGuard {
                commands: self,
                node: node.to_string(),
            },
            notify,
        )
    }

    /// The commands waiting for `node`, now handed over (expired ones are dropped).
    pub fn take(&self, node: &str) -> Vec<Command> {
        let now = unix_secs();
        let mut inner = self.lock();
        let Inner { nodes, pending } = &mut *inner;
        let Some(c) = nodes.get_mut(node) else {
            return Vec::new();
        };
        let cmds: Vec<Command> = c.queue.drain(..).filter(|c| c.deadline >= now).collect();
        for cmd in &cmds {
            if let Some(p) = pending.get_mut(&cmd.id) {
                p.delivered = true;
            }
        }
        cmds
    }

    /// Hand a node's result to whoever waits for it. False when nobody waits for that id
    /// from that node (unknown id, already answered, or another node's command).
    pub fn complete(&self, node: &str, result: CommandResult) -> bool {
        let mut inner = self.lock();
        match inner.pending.get(&result.id) {
            Some(p) if p.node == node => {}
            Some(p) => {
                tracing::warn!(target: "audit", node = %node, owner = %p.node, id = %result.id,
                    "refused a command result from a node the command was not sent to");
                return false;
            }
            None => return false,
        }
        match inner.pending.remove(&result.id) {
            Some(p) => p.tx.send(result).is_ok(),
            None => false,
        }
    }

    /// Send `order` to `node` and wait for its result: the agent must pick it up within
    /// `pickup` and answer within `timeout` of that.
    pub async fn run(
        &self,
        head: &str,
        node: &str,
        credential: &str,
        order: Order,
        pickup: Duration,
        timeout: Duration,
    ) -> Result<CommandResult, ExecError> {
        if !self.connected(node) {
            return Err(ExecError::NotConnected);
        }
        let mut cmd = Command {
            id: new_id(),
            node: node.to_string(),
            head: head.to_string(),
            deadline: unix_secs() + pickup.as_secs().max(1),
            order,
            sig: String::new(),
        };
        cmd.sign(credential);
        let id = cmd.id.clone();
        let (tx, mut rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            inner.pending.insert(
                id.clone(),
                Pending {
                    node: node.to_string(),
                    delivered: false,
                    tx,
                },
            );
            let c = inner.nodes.entry(node.to_string()).or_default();
            c.queue.push_back(cmd);
            c.notify.notify_one();
        }
        let start = tokio::time::Instant::now();
        let outcome = loop {
            let picked = self.lock().pending.get(&id).map(|p| p.delivered);
            let limit = match picked {
                Some(false) => start + pickup,
                _ => start + pickup + timeout,
            };
            let tick = (tokio::time::Instant::now() + Duration::from_millis(250)).min(limit);
            match tokio::time::timeout_at(tick, &mut rx).await {
                Ok(Ok(r)) => break Ok(r),
                Ok(Err(_)) => break Err(ExecError::NoResult(timeout.as_secs())),
                Err(_) if tokio::time::Instant::now() >= limit => {
                    break Err(if picked == Some(false) {
                        ExecError::NotPickedUp(pickup.as_secs())
                    } else {
                        ExecError::NoResult(timeout.as_secs())
                    })
                }
                Err(_) => {}
            }
        };
        if outcome.is_err() {
            let mut inner = self.lock();
            inner.pending.remove(&id);
            if let Some(c) = inner.nodes.get_mut(node) {
                c.queue.retain(|c| c.id != id);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> CommandResult {
        CommandResult {
            id: id.to_string(),
            exit: Some(0),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_command_reaches_only_its_node_and_only_its_node_answers() {
        let c = Arc::new(Commands::default());
        assert!(matches!(
            c.run(
                "h",
                "n1",
                "cred",
                Order::Reboot,
                Duration::from_secs(1),
                Duration::from_secs(1)
            )
            .await,
            Err(ExecError::NotConnected)
        ));
        let (g1, _) = c.poll_started("n1");
        let (g2, _) = c.poll_started("n2");
        let runner = {
            let c = c.clone();
            tokio::spawn(async move {
                c.run(
                    "h",
                    "n1",
                    "cred",
                    Order::Reboot,
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                )
                .await
            })
        };
        let mut cmds = Vec::new();
        for _ in 0..50 {
            cmds = c.take("n1");
            if !cmds.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cmds.len(), 1);
        assert!(cmds[0].verify("cred"));
        assert!(c.take("n2").is_empty());
        assert!(
            !c.complete("n2", result(&cmds[0].id)),
            "another node answered"
        );
        assert!(c.complete("n1", result(&cmds[0].id)));
        assert!(!c.complete("n1", result(&cmds[0].id)), "answered twice");
        assert_eq!(runner.await.unwrap().unwrap().exit, Some(0));
        drop((g1, g2));
        assert!(c.connected("n1"), "a poll that just ended still counts");
    }

    #[tokio::test]
    async fn a_command_nobody_picks_up_fails_and_is_withdrawn() {
        let c = Commands::default();
        let _g = c.poll_started("n1");
        let r = c
            .run(
                "h",
                "n1",
                "cred",
                Order::Reboot,
                Duration::from_secs(1),
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(r, Err(ExecError::NotPickedUp(1))), "{r:?}");
        assert!(c.take("n1").is_empty());
    }
}

//! The node's end of the command channel: a thread that long-polls the head the agent reports
//! to (`GET /api/v1/node/commands?wait=25`, node token), checks every command it gets
//! ([`wulf_api::command::Checker`]: for this node, signed with its credential, deadline not
//! passed, not seen before), runs it and posts the result
//! (`POST /api/v1/node/commands/result`).
//!
//! - **exec**: run in a thread of its own ([`crate::exec`]), at most [`MAX_RUNNING`] at once;
//! - **reboot** / **shutdown**: the result (exit 0) is posted first, then the configured
//!   reboot or poweroff command runs (a command that cannot be found is refused instead). The shutdown report is sent when the system stops the
//!   agent (SIGTERM), as for any clean shutdown: a node whose poweroff never happens keeps
//!   reporting `up`, so the head falls back to the BMC;
//! - **orphan**: the result is posted, then the report loop sends its orphan report and
//!   follows `_orphan_policy` (see [`wulf_api::command::orphan`]); no head is polled while the
//!   orphan is quiet.
//!
//! A refused command is not run; its result says why and a warning is logged. Poll errors are
//! retried with a backoff from 1 s to [`MAX_BACKOFF`]; the head polled is always the one the
//! last report went to, so the channel follows the reports' failover.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, info, warn};
use wulf_api::command::{unix_now, Checker, Command, CommandResult, Order};
use wulf_api::status::node_token;

use crate::exec;
use crate::send::CONNECT_TIMEOUT;
use crate::signals;

/// Seconds a poll asks the head to wait for a command.
pub const WAIT_SECS: u64 = 25;
/// A poll may take this long in all (the wait, and some).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(WAIT_SECS + 10);
/// Posting a result may take this long.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between failed polls.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Commands that may run at once; more are refused.
pub const MAX_RUNNING: usize = 64;

/// The poll path under a head's base URL.
pub const POLL_PATH: &str = "/api/v1/node/commands";
/// The result path under a head's base URL.
pub const RESULT_PATH: &str = "/api/v1/node/commands/result";

/// What the report loop and the command thread share.
#[derive(Debug, Default)]
pub struct Shared {
    /// The head the last report went to (or is tried first).
    head: Mutex<String>,
    /// False while the node must contact no head (a quiet orphan).
    quiet: AtomicBool,
    /// Set by the command thread when a head ordered the node to become an orphan.
    orphan_ordered: AtomicBool,
}

impl Shared {
    pub fn new(head: &str) -> Shared {
        Shared {
            head: Mutex::new(head.to_string()),
            ..Default::default()
        }
    }

    pub fn head(&self) -> String {
        self.head.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn set_head(&self, head: &str) {
        if let Ok(mut h) = self.head.lock() {
            if *h != head {
                *h = head.to_string();
            }
        }
    }

    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::SeqCst);
    }

    pub fn quiet(&self) -> bool {
        self.quiet.load(Ordering::SeqCst)
    }

    /// True when a head ordered the node to become an orphan and the report loop has not
    /// acted on it yet.
    pub fn orphan_pending(&self) -> bool {
        self.orphan_ordered.load(Ordering::SeqCst)
    }

    /// True once after a head ordered the node to become an orphan.
    pub fn take_orphan_order(&self) -> bool {
        self.orphan_ordered.swap(false, Ordering::SeqCst)
    }
}

/// The programs a soft reboot and poweroff run.
#[derive(Debug, Clone)]
pub struct PowerCommands {
    pub reboot: Vec<String>,
    pub poweroff: Vec<String>,
}

/// The command thread's state.
pub struct Channel {
    auth: String,
    checker: Checker,
    /// The long-poll agent and the head it is for.
    poll: Mutex<Option<(String, ureq::Agent)>>,
    shared: Arc<Shared>,
    running: Arc<AtomicUsize>,
    power: PowerCommands,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{head} refused the command poll (HTTP {status}): {message}")]
    Status {
        head: String,
        status: u16,
        message: String,
    },
    #[error("cannot poll {head} for commands: {message}")]
    Transport { head: String, message: String },
    #[error("bad command list from {head}: {message}")]
    Decode { head: String, message: String },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

const UA: &str = concat!("wulf-agent/", env!("CARGO_PKG_VERSION"));

/// The HTTP agent for long polls of `head` (TLS checked against the cluster CA).
fn poll_agent(head: &str) -> Result<ureq::Agent, crate::tls::TlsError> {
    let b = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(POLL_TIMEOUT)
        .user_agent(UA);
    crate::tls::trust().agent(head, b)
}

/// The HTTP agent for posting a result to `head`: a new connection each time.
fn post_agent(head: &str) -> Result<ureq::Agent, crate::tls::TlsError> {
    let b = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(POST_TIMEOUT)
        .max_idle_connections(0)
        .user_agent(UA);
    crate::tls::trust().agent(head, b)
}

fn status_message(resp: ureq::Response) -> String {
    let text = resp.into_string().unwrap_or_default();
    match serde_json::from_str::<wulf_api::ErrorBody>(&text) {
        Ok(b) => b.error,
        Err(_) => text.trim().chars().take(200).collect(),
    }
}

impl Channel {
    pub fn new(node: &str, cred: &str, shared: Arc<Shared>, power: PowerCommands) -> Channel {
        Channel {
            auth: format!("Bearer {}", node_token(node, cred)),
            checker: Checker::new(node, cred),
            poll: Mutex::new(None),
            shared,
            running: Arc::new(AtomicUsize::new(0)),
            power,
        }
    }

    /// Start the thread; it ends when the agent is asked to stop.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("commands".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        let mut last_error: Option<String> = None;
        while !signals::stop_requested() {
            if self.shared.quiet() {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let head = self.shared.head();
            match self.poll_once(&head) {
                Ok(cmds) => {
                    if last_error.take().is_some() {
                        info!("polling {head} for commands again");
                    }
                    backoff = Duration::from_secs(1);
                    for c in cmds {
                        self.handle(&head, c);
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(&text) {
                        warn!("{text}; retrying in {} s", backoff.as_secs());
                    } else {
                        debug!("{text}");
                    }
                    last_error = Some(text);
                    sleep_unless_stopped(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One long poll: the commands the head had for this node (often none).
    pub fn poll_once(&self, head: &str) -> Result<Vec<Value>, PollError> {
        let url = format!("{head}{POLL_PATH}?wait={WAIT_SECS}");
        // One agent (and its kept-alive connection) for the head polled.
        let poll = {
            let mut cur = self.poll.lock().unwrap_or_else(|p| p.into_inner());
            match &*cur {
                Some((h, a)) if h == head => a.clone(),
                _ => {
                    let a = poll_agent(head)?;
                    *cur = Some((head.to_string(), a.clone()));
                    a
                }
            }
        };
        let resp = match poll.get(&url).set("Authorization", &self.auth).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(status, resp)) => {
                return Err(PollError::Status {
                    head: head.to_string(),
                    status,
                    message: status_message(resp),
                })
            }
            Err(ureq::Error::Transport(t)) => {
                let text = t.to_string();
                return Err(PollError::Transport {
                    head: head.to_string(),
                    message: text
                        .strip_prefix(&format!("{url}: "))
                        .unwrap_or(&text)
                        .to_string(),
                });
            }
        };
        let text = resp.into_string().map_err(|e| PollError::Transport {
            head: head.to_string(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| PollError::Decode {
            head: head.to_string(),
            message: e.to_string(),
        })
    }

    /// Check one command from `head` and run it, or post why not.
    fn handle(&mut self, head: &str, raw: Value) {
        let cmd: Command = match serde_json::from_value(raw.clone()) {
            Ok(c) => c,
            Err(e) => {
                warn!("cannot read a command from {head}: {e}");
                if let Some(id) = raw.get("id").and_then(Value::as_str) {
                    self.refuse(
                        head,
                        id,
                        format!(
                            "refused: wulf-agent {} cannot read this command: {e}",
                            crate::VERSION
                        ),
                    );
                }
                return;
            }
        };
        if let Err(r) = self.checker.check(&cmd, unix_now()) {
            warn!(id = %cmd.id, head = %head, order = cmd.order.name(), "{r}");
            self.refuse(head, &cmd.id, r.to_string());
            return;
        }
        match cmd.order {
            Order::Exec {
                argv,
                stdin,
                timeout_secs,
            } => self.exec(head, cmd.id, argv, stdin, timeout_secs),
            Order::Reboot => self.power(head, &cmd.id, &cmd.head, "reboot"),
            Order::Shutdown => self.power(head, &cmd.id, &cmd.head, "shutdown"),
            Order::Orphan => {
                info!(target: "audit", head = %cmd.head, "becoming an orphan on request");
                self.post(head, &accepted(&cmd.id));
                self.shared.set_quiet(true);
                self.shared.orphan_ordered.store(true, Ordering::SeqCst);
                signals::poke();
            }
        }
    }

    fn refuse(&self, head: &str, id: &str, error: String) {
        self.post(
            head,
            &CommandResult {
                id: id.to_string(),
                error: Some(error),
                ..Default::default()
            },
        );
    }

    fn exec(
        &self,
        head: &str,
        id: String,
        argv: Vec<String>,
        stdin: Option<String>,
        timeout_secs: u64,
    ) {
        let running = self.running.fetch_add(1, Ordering::SeqCst);
        if running >= MAX_RUNNING {
            self.running.fetch_sub(1, Ordering::SeqCst);
            warn!("refused command {id}: {MAX_RUNNING} commands are running");
            self.refuse(
                head,
                &id,
                format!("refused: {MAX_RUNNING} commands are already running on this node"),
            );
            return;
        }
        info!("running {argv:?} (command {id}, timeout {timeout_secs} s)");
        let poster = Poster {
            auth: self.auth.clone(),
        };
        let (head, counter) = (head.to_string(), self.running.clone());
        let spawned = std::thread::Builder::new()
            .name("exec".into())
            .spawn(move || {
                let mut r = exec::run(
                    &argv,
                    stdin.as_deref(),
                    Duration::from_secs(timeout_secs.max(1)),
                );
                r.id = id;
                poster.post(&head, &r);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::SeqCst);
            warn!("cannot start a thread for a command: {e}");
        }
    }

    /// Reboot or power off: the result first, then the command.
    fn power(&self, head: &str, id: &str, by: &str, what: &'static str) {
        let argv = match what {
            "reboot" => &self.power.reboot,
            _ => &self.power.poweroff,
        };
        info!(target: "audit", head = %by, command = %argv.join(" "), "{what} requested");
        let setting = if what == "reboot" {
            "reboot_cmd"
        } else {
            "poweroff_cmd"
        };
        if let Some(why) = exec::missing(argv.first().map_or("", String::as_str)) {
            warn!("cannot {what}: {why}");
            self.refuse(head, id, format!("cannot {what}: {why} (set {setting}=)"));
            return;
        }
        self.post(head, &accepted(id));
        exec::start_detached(argv, what);
    }

    fn post(&self, head: &str, r: &CommandResult) {
        Poster {
            auth: self.auth.clone(),
        }
        .post(head, r);
    }
}

fn accepted(id: &str) -> CommandResult {
    CommandResult {
        id: id.to_string(),
        exit: Some(0),
        ..Default::default()
    }
}

fn sleep_unless_stopped(d: Duration) {
    let step = Duration::from_millis(200);
    let mut left = d;
    while !left.is_zero() && !signals::stop_requested() {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

/// Posts results, trying a few times when the head cannot be reached.
struct Poster {
    auth: String,
}

impl Poster {
    const TRIES: u32 = 3;

    fn post(&self, head: &str, r: &CommandResult) {
        let url = format!("{head}{RESULT_PATH}");
        let body = match serde_json::to_vec(r) {
            Ok(b) => b,
            Err(e) => {
                warn!("cannot encode the result of command {}: {e}", r.id);
                return;
            }
        };
        let agent = match post_agent(head) {
            Ok(a) => a,
            Err(e) => {
                warn!("cannot post the result of command {}: {e}", r.id);
                return;
            }
        };
        for attempt in 1..=Self::TRIES {
            let sent = agent
                .post(&url)
                .set("Authorization", &self.auth)
                .set("Content-Type", "application/json")
                .send_bytes(&body);
            match sent {
                Ok(_) => return,
                Err(ureq::Error::Status(404, _)) => {
                    debug!("{head} no longer waits for command {}", r.id);
                    return;
                }
                Err(ureq::Error::Status(status, resp)) => {
                    warn!(
                        "{head} refused the result of command {} (HTTP {status}): {}",
                        r.id,
                        status_message(resp)
                    );
                    return;
                }
                Err(e) if attempt < Self::TRIES => {
                    debug!("posting the result of command {}: {e}; again", r.id);
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => warn!("cannot post the result of command {}: {e}", r.id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::path::Path;
    use std::time::Instant;
    use wulf_api::command::CLOCK_SKEW_SECS;

    /// A head that answers the first poll with `commands` (then `[]`), records every result
    /// posted, and writes `<dir>/seen-<id>` when it gets the result for `id`.
    struct FakeHead {
        url: String,
        results: Arc<Mutex<Vec<(String, CommandResult)>>>,
    }

    fn fake_head(commands: Vec<Value>, dir: &Path) -> FakeHead {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let results = Arc::new(Mutex::new(Vec::new()));
        let (rec, dir) = (results.clone(), dir.to_path_buf());
        let queue = Arc::new(Mutex::new(Some(commands)));
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let (rec, dir, queue) = (rec.clone(), dir.clone(), queue.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().expect("clone"));
                    let mut w = conn;
                    let mut request = String::new();
                    if r.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut len, mut auth) = (0usize, String::new());
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if lower.starts_with("authorization:") {
                            auth = line["authorization:".len()..].trim().to_string();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = if request.starts_with("GET /api/v1/node/commands?wait=25 ") {
                        let cmds = queue.lock().expect("lock").take().unwrap_or_default();
                        serde_json::to_string(&cmds).expect("json")
                    } else if request.starts_with("POST /api/v1/node/commands/result ") {
                        let res: CommandResult = serde_json::from_slice(&body).expect("result");
                        std::fs::write(dir.join(format!("seen-{}", res.id)), "").expect("mark");
                        rec.lock().expect("lock").push((auth, res));
                        String::new()
                    } else {
                        panic!("unexpected request {request}");
                    };
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                });
            }
        });
        FakeHead { url, results }
    }

    fn command(id: &str, node: &str, deadline: u64, order: Order, cred: &str) -> Value {
        let mut c = Command {
            id: id.into(),
            node: node.into(),
            head: "head-a".into(),
            deadline,
            order,
            sig: String::new(),
        };
        c.sign(cred);
        serde_json::to_value(&c).expect("json")
    }

    fn exec(argv: &[&str], stdin: Option<&str>) -> Order {
        Order::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: stdin.map(str::to_string),
            timeout_secs: 10,
        }
    }

    fn wait_results(h: &FakeHead, n: usize) -> Vec<(String, CommandResult)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = h.results.lock().expect("lock").clone();
            if r.len() >= n {
                return r;
            }
            assert!(Instant::now() < deadline, "only {} results: {r:?}", r.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run_all(ch: &mut Channel, h: &FakeHead) {
        let cmds = ch.poll_once(&h.url).expect("poll");
        for c in cmds {
            ch.handle(&h.url, c);
        }
        assert!(ch.poll_once(&h.url).expect("second poll").is_empty());
    }

    #[test]
    fn only_genuine_commands_run_and_every_command_gets_a_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mark = |name: &str| dir.path().join(name);
        let touch = |name: &str| {
            let m = mark(name).display().to_string();
            Order::Exec {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("echo ran; touch {m}"),
                ],
                stdin: None,
                timeout_secs: 10,
            }
        };
        let now = unix_now();
        let cmds = vec![
            command("good", "n1", now + 10, touch("good"), "cred"),
            command("good", "n1", now + 10, touch("replayed"), "cred"),
            command("forged", "n1", now + 10, touch("forged"), "not-the-cred"),
            command("other", "n2", now + 10, touch("other"), "cred"),
            command(
                "late",
                "n1",
                now - CLOCK_SKEW_SECS - 5,
                touch("late"),
                "cred",
            ),
            serde_json::json!({"id": "odd", "node": "n1", "order": "dance"}),
            command(
                "cat",
                "n1",
                now + 10,
                exec(&["cat"], Some("to stdin\n")),
                "cred",
            ),
            command(
                "exit",
                "n1",
                now + 10,
                exec(&["sh", "-c", "exit 7"], None),
                "cred",
            ),
            command("rb", "n1", now + 10, Order::Reboot, "cred"),
        ];
        // The replay reuses the id of a good command but its body differs: sign it anew so
        // only the id is the problem.
        let h = fake_head(cmds, dir.path());
        let mut ch = Channel::new(
            "n1",
            "cred",
            Arc::new(Shared::new(&h.url)),
            PowerCommands {
                reboot: vec!["/no/such/reboot".into()],
                poweroff: vec!["false".into()],
            },
        );
        run_all(&mut ch, &h);
        let results = wait_results(&h, 9);
        let by_id = |id: &str| -> CommandResult {
            results
                .iter()
                .filter(|(_, r)| r.id == id)
                .map(|(_, r)| r.clone())
                .next()
                .unwrap_or_else(|| panic!("no result for {id}: {results:?}"))
        };
        assert!(results
            .iter()
            .all(|(auth, _)| auth == "Bearer node:n1:cred"));
        let good: Vec<&CommandResult> = results
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.id == "good")
            .collect();
        assert_eq!(good.len(), 2, "{results:?}");
        assert!(good
            .iter()
            .any(|r| r.exit == Some(0) && r.stdout == "ran\n"));
        assert!(good.iter().any(|r| r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("already run (replay)"))));
        assert!(mark("good").exists());
        for (id, file, why) in [
            ("forged", "forged", "bad signature"),
            ("other", "other", "for node n2, not this one"),
            ("late", "late", "expired"),
        ] {
            let r = by_id(id);
            assert_eq!(r.exit, None, "{r:?}");
            assert!(r.error.as_deref().unwrap_or("").contains(why), "{r:?}");
            assert!(!mark(file).exists(), "{id} ran");
        }
        assert!(!mark("replayed").exists());
        assert!(by_id("odd")
            .error
            .unwrap_or_default()
            .contains("cannot read this command"));
        let cat = by_id("cat");
        assert_eq!((cat.exit, cat.stdout.as_str()), (Some(0), "to stdin\n"));
        assert_eq!(by_id("exit").exit, Some(7));
        // A reboot command that cannot run is refused, not accepted and then not done.
        let rb = by_id("rb");
        assert_eq!(rb.exit, None);
        assert_eq!(
            rb.error.as_deref(),
            Some("cannot reboot: /no/such/reboot is not an executable file (set reboot_cmd=)")
        );
    }

    #[test]
    fn reboot_posts_its_result_before_it_acts_and_orphan_goes_quiet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = unix_now();
        let h = fake_head(
            vec![
                command("r1", "n1", now + 10, Order::Reboot, "cred"),
                command("s1", "n1", now + 10, Order::Shutdown, "cred"),
                command("o1", "n1", now + 10, Order::Orphan, "cred"),
            ],
            dir.path(),
        );
        // Each command leaves a mark only if the head already had its result.
        let after = |id: &str, mark: &str| {
            vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                format!(
                    "test -f {seen} && touch {mark}",
                    seen = dir.path().join(format!("seen-{id}")).display(),
                    mark = dir.path().join(mark).display()
                ),
            ]
        };
        let shared = Arc::new(Shared::new(&h.url));
        let mut ch = Channel::new(
            "n1",
            "cred",
            shared.clone(),
            PowerCommands {
                reboot: after("r1", "rebooted"),
                poweroff: after("s1", "powered-off"),
            },
        );
        assert!(!shared.quiet());
        run_all(&mut ch, &h);
        let results = wait_results(&h, 3);
        assert!(
            results
                .iter()
                .all(|(_, r)| r.exit == Some(0) && r.error.is_none()),
            "{results:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(dir.path().join("rebooted").exists() && dir.path().join("powered-off").exists()) {
            assert!(
                Instant::now() < deadline,
                "the power commands did not run after their results"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(shared.quiet());
        assert!(shared.take_orphan_order());
        assert!(!shared.take_orphan_order());
    }
}

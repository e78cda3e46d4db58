//! Simulated nodes' end of the command channel, as `wulf-agent` has it: each node long-polls
//! the head it reports to (`GET /api/v1/node/commands?wait=25`), checks every command with the
//! agent's [`Checker`], and posts a result for each.
//!
//! The polls are async tasks on a small tokio runtime, not a thread per node (see
//! [`super::poll`]): a node's first poll follows its first report, at most
//! [`super::poll::CONNECTING`] connections are set up at once, and each node keeps its
//! connection for the next poll. Commands are carried out on the runtime's blocking threads
//! (at most [`BLOCKING_THREADS`]); the waits in them (a `sleep`, a reboot's silence) are timers,
//! so 100,000 nodes need no more threads than 1,000.
//!
//! - **exec** runs a built-in command: `hostname`, `uptime`, `true`, `false`, `sleep N`,
//!   `echo ARGS…`, `cat` (prints its stdin); anything else exits 127 "command not found".
//!   A running `sleep` makes the node busy for the orphan's idle policy.
//! - **reboot**: the node sends its shutdown report, is silent for 1 to 3 s, fetches its boot
//!   script as at start (a boot) and reports up with a new boot id.
//! - **shutdown**: the node sends its shutdown report and stays down (a simulated node has no
//!   BMC, so nothing can power it on again before the simulator restarts).
//! - **orphan**: the node sends its orphan report, contacts no head for `_orphan_secs`, and
//!   follows `_orphan_policy` with the agent's state machine.
//!
//! Nodes named in `--ignore-soft` accept a reboot or shutdown (exit 0) and carry on as if
//! their shutdown hung, so the head's BMC fallback can be tested at scale.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use wulf_api::command::orphan::{Event, OrphanWatch};
use wulf_api::command::{unix_now, Command, CommandResult, Order};
use wulf_api::status::{node_token, ReportState};

use super::{boot, lock, poll, send, Heads, Node, Phase, SimNode, Stats};

/// Seconds a poll asks the head to wait, as the agent does.
const WAIT_SECS: u64 = 25;
/// A poll (or a result) may take this long.
const POLL_TIMEOUT: Duration = Duration::from_secs(WAIT_SECS + 10);
/// Longest pause between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// `sleep` commands one node runs at once, as the agent's limit.
const MAX_RUNNING: usize = 64;
/// Threads that carry out commands (short HTTP exchanges: results, reports, boots).
pub(super) const BLOCKING_THREADS: usize = 128;
/// Stack of the runtime's threads: they only do small HTTP exchanges.
const STACK: usize = 1 << 20;

/// What the pollers, commands and reboots share.
pub(super) struct Ctx {
    /// The configured heads.
    pub heads: Vec<String>,
    pub http: ureq::Agent,
    pub stats: Arc<Stats>,
    pub stop: Arc<AtomicBool>,
    pub ignore_soft: HashSet<String>,
    /// The pollers' runtime.
    pub rt: tokio::runtime::Handle,
    /// The pollers' connections.
    pub net: poll::Net,
}

/// The runtime the pollers and commands run on: 2 worker threads, at most
/// [`BLOCKING_THREADS`] more for commands.
pub(super) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_stack_size(STACK)
        .thread_name("sim-poll")
        .enable_all()
        .build()
}

/// Raise the open-file limit to `want` files: the hard limit too where this process may
/// (root), else as far as it allows. Returns the soft limit now.
pub(super) fn raise_fd_limit(want: u64) -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        if l.rlim_cur >= want {
            return l.rlim_cur;
        }
        if l.rlim_max < want {
            let more = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &more) == 0 {
                return want;
            }
        }
        l.rlim_cur = want.min(l.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        }
        l.rlim_cur
    }
}

/// Start node `index`'s poller.
pub(super) fn spawn_poller(node: Node, ctx: Arc<Ctx>, index: usize) {
    ctx.rt.clone().spawn(poller(node, ctx, index));
}

/// Run `f` on a blocking thread; `None` if it could not run (the runtime is stopping).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Poll for commands while the node is up and may contact its head, until the simulator
/// stops. The first poll waits for the node's first report.
async fn poller(node: Node, ctx: Arc<Ctx>, index: usize) {
    let first = lock(&node).first_report;
    tokio::time::sleep(first.saturating_duration_since(Instant::now())).await;
    let path = format!("/api/v1/node/commands?wait={WAIT_SECS}");
    let mut conn = None;
    let mut backoff = Duration::from_secs(1);
    while !ctx.stop.load(Ordering::Relaxed) {
        let (head, token, boots, active) = {
            let n = lock(&node);
            let active = n.phase == Phase::Up && n.orphan.may_contact(Instant::now());
            (n.head.clone(), n.token.clone(), n.boots, active)
        };
        if !active {
            // A quiet orphan or a node that is down holds no connection.
            conn = None;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let polled = ctx
            .net
            .get(&mut conn, &head, index, &path, &token, POLL_TIMEOUT)
            .await
            .and_then(|(status, body)| match status {
                200 => serde_json::from_slice::<Vec<Value>>(&body).map_err(|e| e.to_string()),
                _ => Err(format!(
                    "{head}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                )),
            });
        match polled {
            Ok(cmds) => {
                backoff = Duration::from_secs(1);
                if cmds.is_empty() {
                    continue;
                }
                let (node, ctx) = (node.clone(), ctx.clone());
                let done = blocking(move || {
                    for c in cmds {
                        // A node that rebooted meanwhile never got these.
                        let current = {
                            let n = lock(&node);
                            n.boots == boots && n.phase == Phase::Up
                        };
                        if current {
                            handle(&node, &ctx, &head, &token, c);
                        }
                    }
                })
                .await
                .is_some();
                if !done {
                    return;
                }
            }
            Err(e) => {
                ctx.stats.error(format!("command poll: {e}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Send one report for `n` (once more after a moment if no head took it: these few reports
/// around reboots and orphans are the ones the head waits for).
fn report(ctx: &Ctx, heads: &mut Heads, n: &mut SimNode, state: ReportState) -> Result<(), String> {
    let mut rng = rand::thread_rng();
    let mut taken = BTreeMap::new();
    let first = send(&ctx.http, heads, n, state, &mut rng, &ctx.stats, &mut taken);
    if first.is_ok() || ctx.stop.load(Ordering::Relaxed) {
        return first;
    }
    std::thread::sleep(Duration::from_millis(200));
    send(&ctx.http, heads, n, state, &mut rng, &ctx.stats, &mut taken)
}

/// Post one result to `head`, once more if the first try fails to connect (404: the head no
/// longer waits for it, fine).
fn post(http: &ureq::Agent, head: &str, token: &str, r: &CommandResult) {
    let Ok(body) = serde_json::to_string(r) else {
        return;
    };
    let url = format!("{head}/api/v1/node/commands/result");
    for _ in 0..2 {
        match http
            .post(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .send_string(&body)
        {
            Ok(_) | Err(ureq::Error::Status(404, _)) => return,
            Err(ureq::Error::Status(..)) => break,
            Err(_) => {}
        }
    }
}

fn answer(id: &str, exit: Option<i32>, error: Option<String>) -> CommandResult {
    CommandResult {
        id: id.to_string(),
        exit,
        error,
        ..Default::default()
    }
}

/// Check and carry out one command.
fn handle(node: &Node, ctx: &Arc<Ctx>, head: &str, token: &str, raw: Value) {
    let http = &ctx.http;
    let cmd: Command = match serde_json::from_value(raw.clone()) {
        Ok(c) => c,
        Err(e) => {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(id) = raw.get("id").and_then(Value::as_str) {
                let why = format!("refused: this simulated node cannot read the command: {e}");
                post(http, head, token, &answer(id, None, Some(why)));
            }
            return;
        }
    };
    let (checked, name) = {
        let mut n = lock(node);
        (n.checker.check(&cmd, unix_now()), n.name.clone())
    };
    if let Err(r) = checked {
        ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
        ctx.stats.error(format!("{name}: {r}"));
        post(
            http,
            head,
            token,
            &answer(&cmd.id, None, Some(r.to_string())),
        );
        return;
    }
    ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    match cmd.order {
        Order::Exec {
            argv,
            stdin,
            timeout_secs,
        } => {
            let (booted, boots) = {
                let n = lock(node);
                (n.booted, n.boots)
            };
            match builtin(&name, booted, &argv, stdin.as_deref()) {
                Builtin::Done(mut r) => {
                    r.id = cmd.id;
                    post(http, head, token, &r);
                }
                Builtin::Sleep(secs) => {
                    sleep_command(node, ctx, head, token, cmd.id, secs, timeout_secs, boots)
                }
            }
        }
        Order::Reboot | Order::Shutdown => {
            post(http, head, token, &answer(&cmd.id, Some(0), None));
            if ctx.ignore_soft.contains(&name) {
                ctx.stats.ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if cmd.order == Order::Reboot {
                start_reboot(node, ctx, true);
            } else {
                let mut n = lock(node);
                let mut heads = Heads::new(ctx.heads.clone());
                if let Err(e) = report(ctx, &mut heads, &mut n, ReportState::Shutdown) {
                    ctx.stats.error(format!("{name}: shutdown report: {e}"));
                }
                n.phase = Phase::Off;
                ctx.stats.shutdowns.fetch_add(1, Ordering::Relaxed);
            }
        }
        Order::Orphan => {
            post(http, head, token, &answer(&cmd.id, Some(0), None));
            let mut guard = lock(node);
            let n = &mut *guard;
            let mut heads = Heads::new(ctx.heads.clone());
            if let Err(e) = report(ctx, &mut heads, n, ReportState::Orphan) {
                ctx.stats.error(format!("{name}: orphan report: {e}"));
            }
            let events = n.orphan.ordered(Instant::now());
            orphan_events(ctx, node, n, events);
        }
    }
}

/// What the orphan watch said, done: count orphans, reboot when told. `n` is `node`, locked.
pub(super) fn orphan_events(ctx: &Arc<Ctx>, node: &Node, n: &mut SimNode, events: Vec<Event>) {
    for e in events {
        match e {
            Event::Orphaned { .. } => {
                ctx.stats.orphans.fetch_add(1, Ordering::Relaxed);
                // A head that takes the node back gets its hardware again.
                n.reports = 0;
            }
            Event::Rejoined { .. } => {
                ctx.stats.rejoins.fetch_add(1, Ordering::Relaxed);
            }
            Event::Reboot { .. } if n.phase == Phase::Up => {
                n.phase = Phase::Down;
                spawn_reboot(node, ctx, false);
            }
            Event::Reboot { .. } => {}
        }
    }
}

/// Reboot a node that is up (from a head's reboot command).
fn start_reboot(node: &Node, ctx: &Arc<Ctx>, shutdown_report: bool) {
    {
        let mut n = lock(node);
        if n.phase != Phase::Up {
            return;
        }
        n.phase = Phase::Down;
    }
    spawn_reboot(node, ctx, shutdown_report);
}

fn spawn_reboot(node: &Node, ctx: &Arc<Ctx>, shutdown_report: bool) {
    let (node, ctx) = (node.clone(), ctx.clone());
    ctx.rt.clone().spawn(reboot(node, ctx, shutdown_report));
}

/// A reboot: the shutdown report (for a head's reboot), silence for 1 to 3 s, a boot (the
/// boot script fetched from the node's head, else the others), then up with a new boot id.
/// The node is [`Phase::Down`] throughout.
async fn reboot(node: Node, ctx: Arc<Ctx>, shutdown_report: bool) {
    let (n2, c2) = (node.clone(), ctx.clone());
    let Some((mac, name, current)) = blocking(move || {
        let mut n = lock(&n2);
        if shutdown_report {
            let mut heads = Heads::new(c2.heads.clone());
            if let Err(e) = report(&c2, &mut heads, &mut n, ReportState::Shutdown) {
                c2.stats.error(format!("{}: shutdown report: {e}", n.name));
            }
        }
        n.boots += 1;
        (n.mac.clone(), n.name.clone(), n.head.clone())
    })
    .await
    else {
        return;
    };
    ctx.stats.reboots.fetch_add(1, Ordering::Relaxed);
    let silence = Duration::from_millis(rand::thread_rng().gen_range(1000..3000));
    tokio::time::sleep(silence).await;
    let mut order = vec![current.clone()];
    order.extend(ctx.heads.iter().filter(|h| **h != current).cloned());
    let order = Arc::new(order);
    let (params, head) = loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        let (c2, o2, m2) = (ctx.clone(), order.clone(), mac.clone());
        match blocking(move || boot(&c2.http, &o2, &m2)).await {
            Some(Ok(b)) => break b,
            Some(Err(e)) => {
                ctx.stats.error(format!("{name}: boot: {e}"));
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            None => return,
        }
    };
    blocking(move || {
        let mut heads = Heads::new(ctx.heads.clone());
        let mut n = lock(&node);
        let cred = params.get("cred").cloned().unwrap_or_default();
        let settings = n.orphan.settings();
        let now = Instant::now();
        n.token = node_token(&n.uid, &cred);
        n.checker = wulf_api::command::Checker::new(&n.uid, &cred);
        n.head = head;
        n.booted = now;
        n.boot_id = format!("{:032x}", rand::random::<u128>());
        n.reports = 0;
        n.orphan = OrphanWatch::new(settings, now);
        n.sleeping = 0;
        n.phase = Phase::Up;
        if let Err(e) = report(&ctx, &mut heads, &mut n, ReportState::Up) {
            ctx.stats
                .error(format!("{name}: first report after the reboot: {e}"));
        }
    })
    .await;
}

/// `sleep N` as a timer, busy while it runs; cut at the command's timeout.
#[allow(clippy::too_many_arguments)]
fn sleep_command(
    node: &Node,
    ctx: &Arc<Ctx>,
    head: &str,
    token: &str,
    id: String,
    secs: f64,
    timeout_secs: u64,
    boots: u64,
) {
    {
        let mut n = lock(node);
        if n.sleeping >= MAX_RUNNING {
            drop(n);
            let why = format!("refused: {MAX_RUNNING} commands are already running on this node");
            post(&ctx.http, head, token, &answer(&id, None, Some(why)));
            return;
        }
        n.sleeping += 1;
        n.busy_since_tick = true;
    }
    let (node, ctx, head, token) = (
        node.clone(),
        ctx.clone(),
        head.to_string(),
        token.to_string(),
    );
    ctx.rt.clone().spawn(async move {
        let limit = timeout_secs.max(1) as f64;
        tokio::time::sleep(Duration::from_secs_f64(secs.min(limit))).await;
        let same_boot = {
            let mut n = lock(&node);
            let same = n.boots == boots;
            if same {
                n.sleeping = n.sleeping.saturating_sub(1);
            }
            same
        };
        if !same_boot {
            return;
        }
        let r = if secs > limit {
            answer(&id, None, Some(format!("timed out after {timeout_secs} s")))
        } else {
            answer(&id, Some(0), None)
        };
        blocking(move || post(&ctx.http, &head, &token, &r)).await;
    });
}

/// A built-in command's outcome.
#[derive(Debug)]
enum Builtin {
    Done(CommandResult),
    /// `sleep`, for this many seconds.
    Sleep(f64),
}

fn done(exit: i32, stdout: String, stderr: String) -> Builtin {
    Builtin::Done(CommandResult {
        exit: Some(exit),
        stdout,
        stderr,
        ..Default::default()
    })
}

/// `uptime`'s line: time of day (UTC), time up, load.
fn uptime_line(now_unix: u64, up: Duration) -> String {
    let t = now_unix % 86_400;
    let (h, m, s) = (t / 3600, t % 3600 / 60, t % 60);
    let up = up.as_secs();
    let days = up / 86_400;
    let rest = up % 86_400;
    let mut text = String::new();
    if days > 0 {
        text.push_str(&format!("{days} day{}, ", if days == 1 { "" } else { "s" }));
    }
    if rest < 3600 {
        text.push_str(&format!("{} min", rest / 60));
    } else {
        text.push_str(&format!("{}:{:02}", rest / 3600, rest % 3600 / 60));
    }
    format!(" {h:02}:{m:02}:{s:02} up {text},  0 users,  load average: 0.00, 0.00, 0.00\n")
}

/// Run one of the built-in commands of node `name`.
fn builtin(name: &str, booted: Instant, argv: &[String], stdin: Option<&str>) -> Builtin {
    let Some(program) = argv.first() else {
        return Builtin::Done(answer("", None, Some("no command given".into())));
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    let args = &argv[1..];
    match base {
        "hostname" => done(0, format!("{name}\n"), String::new()),
        "uptime" => done(0, uptime_line(unix_now(), booted.elapsed()), String::new()),
        "true" => done(0, String::new(), String::new()),
        "false" => done(1, String::new(), String::new()),
        "echo" => done(0, format!("{}\n", args.join(" ")), String::new()),
        "cat" => done(0, stdin.unwrap_or_default().to_string(), String::new()),
        "sleep" => match args.first().map(|a| a.parse::<f64>()) {
            Some(Ok(secs)) if secs.is_finite() && secs >= 0.0 && args.len() == 1 => {
                Builtin::Sleep(secs)
            }
            _ => done(
                1,
                String::new(),
                format!("sleep: invalid time interval '{}'\n", args.join(" ")),
            ),
        },
        _ => done(
            127,
            String::new(),
            format!("{program}: command not found (simulated node)\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn out(b: Builtin) -> (Option<i32>, String, String) {
        match b {
            Builtin::Done(r) => (r.exit, r.stdout, r.stderr),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builtin_commands() {
        let t = Instant::now();
        let run = |a: &[&str], stdin: Option<&str>| builtin("n7", t, &argv(a), stdin);
        assert_eq!(
            out(run(&["hostname"], None)),
            (Some(0), "n7\n".into(), String::new())
        );
        assert_eq!(out(run(&["/bin/true"], None)).0, Some(0));
        assert_eq!(out(run(&["false"], None)).0, Some(1));
        assert_eq!(out(run(&["echo", "a", "b c"], None)).1, "a b c\n");
        assert_eq!(out(run(&["echo"], None)).1, "\n");
        assert_eq!(out(run(&["cat"], Some("in\n"))).1, "in\n");
        assert!(matches!(run(&["sleep", "2.5"], None), Builtin::Sleep(s) if s == 2.5));
        assert_eq!(out(run(&["sleep", "x"], None)).0, Some(1));
        assert_eq!(out(run(&["sleep"], None)).0, Some(1));
        let (code, _, err) = out(run(&["make", "world"], None));
        assert_eq!(code, Some(127));
        assert!(err.contains("make: command not found"), "{err}");
        let up = out(run(&["uptime"], None)).1;
        assert!(
            up.contains(" up 0 min,") && up.contains("load average"),
            "{up}"
        );
    }

    #[test]
    fn uptime_lines() {
        assert_eq!(
            uptime_line(3600 * 13 + 61, Duration::from_secs(125)),
            " 13:01:01 up 2 min,  0 users,  load average: 0.00, 0.00, 0.00\n"
        );
        assert!(uptime_line(0, Duration::from_secs(86_400 + 3 * 3600 + 300))
            .contains("up 1 day, 3:05,"));
        assert!(uptime_line(0, Duration::from_secs(2 * 86_400)).contains("up 2 days, 0 min,"));
    }
}

//! `wulf sim`: simulated nodes in one process that speak the real protocol. Each one fetches
//! its iPXE boot script from the head (so the head sees it boot), trades the one-time
//! enrollment token the script would put on a kernel command line for its credential, as
//! `wulf-agent` does (all from this process's address: simulated nodes are exempt from the
//! rule that a node enrolls from its reserved IP), and reports status every `_status_secs`
//! with the node token. When the simulator stops, its
//! nodes send a clean-shutdown report (or, with `--crash`, just go silent).
//!
//! Each node also long-polls its head for commands, checks them exactly as `wulf-agent` does
//! (`wulf_api::command::Checker`) and carries them out (see [`commands`]): a few built-in
//! exec commands, soft reboot and shutdown, orphan with the `_orphan_policy` state machine
//! the agent uses. `--ignore-soft` makes some nodes accept a reboot or shutdown and not act
//! on it, like a node whose shutdown hangs.
//!
//! With several heads, node i boots from and reports to head i mod H. Like the agent, a node
//! whose head cannot take a report (no connection, a timeout, HTTP 5xx) sends it to another
//! head at once and stays there; the heads each answer names (every head that is up) are
//! added after the configured ones, so a simulator given one head can fail over too.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod commands;
mod poll;
pub(crate) mod storm;

use rand::Rng;
use serde_json::Value;
use wulf_api::command::orphan::{self, OrphanWatch};
use wulf_api::command::Checker;
use wulf_api::status::{
    node_token, AgentCost, Disk, Hardware, Nic, ReportReply, ReportState, StatusReport,
};
use wulf_api::{ApiError, Client};

/// Simulated nodes get MACs 02:57:xx:xx:xx:xx (locally administered).
const MAC_PREFIX: [u8; 2] = [0x02, 0x57];

/// Connecting to a head may take this long (as for wulf-agent).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole request may take this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A worker tries a head that failed only after the others for this long.
const AVOID: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: usize,
    /// Seconds to run (None: until SIGINT/SIGTERM).
    pub duration: Option<f64>,
    /// Simulated boot time: each node first reports after a random delay up to this.
    pub boot_secs: f64,
    /// Parallel connections to the head.
    pub connections: usize,
    /// Nodes that poll for commands, the first ones by index (None: all).
    pub polls: Option<usize>,
    /// Stop without clean-shutdown reports.
    pub crash: bool,
    /// Print throughput and latency every this many seconds (0: only at the end).
    pub stats_every: f64,
    /// Create missing simulated nodes.
    pub create: bool,
    /// Head base URLs to spread the nodes over (normalised, see [`normalize_head`]); empty:
    /// the admin client's head.
    pub heads: Vec<String>,
    /// Names of the nodes that accept a soft reboot or shutdown but do not act on it.
    pub ignore_soft: std::collections::HashSet<String>,
    /// TLS to the heads (the CLI's CA, or none checked with --insecure); None: only http://
    /// heads can be reached.
    pub tls: Option<Arc<wulf_api::tls::ClientConfig>>,
}

/// An HTTP agent with these settings and the simulator's TLS.
pub(crate) fn agent(
    b: ureq::AgentBuilder,
    tls: &Option<Arc<wulf_api::tls::ClientConfig>>,
) -> ureq::Agent {
    match tls {
        Some(t) => b.tls_config(t.clone()).build(),
        None => b.build(),
    }
}

/// What a simulated node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running: reports and polls for commands.
    Up,
    /// Rebooting: silent until it has fetched its boot script again.
    Down,
    /// Shut down: silent for good (a simulated node has no BMC to power it on).
    Off,
}

/// One simulated node.
struct SimNode {
    uid: String,
    name: String,
    mac: String,
    /// The address it reports: the node's `ip`, else this machine's toward its head.
    ip: Option<String>,
    booted: Instant,
    /// When its first report is due (spread over `--boot-secs`); its first command poll
    /// follows it.
    first_report: Instant,
    interval: u32,
    busy: bool,
    reports: u64,
    boot_id: String,
    /// Bearer token `node:<uid>:<cred>`.
    token: String,
    /// Base URL of the head it reports to now.
    head: String,
    /// Where its failovers start among the other heads, so a dead head's nodes spread evenly.
    spread: usize,
    phase: Phase,
    /// Boots so far: a command still running from an earlier boot has no one to answer to.
    boots: u64,
    orphan: OrphanWatch,
    checker: Checker,
    /// `sleep` commands running: the node is busy (for the orphan's idle policy) while any
    /// run, and was busy in an interval in which one ran.
    sleeping: usize,
    busy_since_tick: bool,
}

impl SimNode {
    fn new(uid: String, name: String, mac: String, cred: &str, head: String) -> SimNode {
        SimNode {
            token: node_token(&uid, cred),
            checker: Checker::new(&uid, cred),
            uid,
            name,
            mac,
            ip: None,
            booted: Instant::now(),
            first_report: Instant::now(),
            interval: 10,
            busy: false,
            reports: 0,
            boot_id: format!("{:032x}", rand::random::<u128>()),
            head,
            spread: 0,
            phase: Phase::Up,
            boots: 1,
            orphan: OrphanWatch::new(orphan::Settings::default(), Instant::now()),
            sleeping: 0,
            busy_since_tick: false,
        }
    }

    /// CPU use since the last call, as % of one CPU: busy while a `sleep` runs.
    fn cpu_pct(&mut self) -> f64 {
        let busy = self.sleeping > 0 || self.busy_since_tick;
        self.busy_since_tick = false;
        if busy {
            100.0
        } else {
            0.0
        }
    }
}

/// A node shared by its reporting worker and its command poller.
type Node = Arc<Mutex<SimNode>>;

fn lock(n: &Node) -> std::sync::MutexGuard<'_, SimNode> {
    n.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared counters.
#[derive(Default)]
pub struct Stats {
    reports: AtomicU64,
    errors: AtomicU64,
    /// Nodes that moved to another head.
    failovers: AtomicU64,
    last_failover: Mutex<Option<String>>,
    /// Per head: reports it took, nodes on it when the simulator stopped.
    per_head: Mutex<BTreeMap<String, (u64, u64)>>,
    /// Latencies (µs) since the last stats print.
    window: Mutex<Vec<u32>>,
    /// All latencies (µs).
    all: Mutex<Vec<u32>>,
    last_error: Mutex<Option<String>>,
    /// Shutdown reports no head took.
    unsaid: AtomicU64,
    /// Commands run, refused; soft reboots, shutdowns, soft requests ignored; orphans, rejoins.
    pub commands: AtomicU64,
    pub refused: AtomicU64,
    pub reboots: AtomicU64,
    pub shutdowns: AtomicU64,
    pub ignored: AtomicU64,
    pub orphans: AtomicU64,
    pub rejoins: AtomicU64,
}

impl Stats {
    fn record(&self, micros: u32) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = self.window.lock() {
            w.push(micros);
        }
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e);
        }
    }

    fn failover(&self, what: String) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_failover.lock() {
            *l = Some(what);
        }
    }

    /// Nodes that moved to another head so far.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Reports each head took, and how many nodes were on it at the end.
    pub fn per_head(&self) -> BTreeMap<String, (u64, u64)> {
        self.per_head.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Take the window: (count, p50 ms, p99 ms, max ms).
    fn take_window(&self) -> Vec<u32> {
        let w = self
            .window
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        if let Ok(mut all) = self.all.lock() {
            all.extend_from_slice(&w);
        }
        w
    }
}

/// p50, p99 and max of latencies in µs, as ms.
pub fn percentiles(mut v: Vec<u32>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

fn mac_of(i: usize) -> String {
    let i = i as u32;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        MAC_PREFIX[0],
        MAC_PREFIX[1],
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// The `wulf.*` parameters of a boot script.
pub fn script_params(script: &str) -> BTreeMap<String, String> {
    script
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("wulf."))
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Normalise a head URL as wulf-agent does: `https://` added when there is no scheme, a
/// trailing `/` removed. https:// and http:// are supported (heads serve the API on https).
pub fn normalize_head(h: &str) -> Result<String, String> {
    let h = h.trim();
    let (scheme, rest) = match h.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some(_) => {
            return Err(format!(
                "bad head URL '{h}': only https:// and http:// URLs are supported"
            ))
        }
        None => ("https", h),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "bad head URL '{h}': give a base URL like https://10.54.0.1:8740"
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// The heads one worker knows: the configured ones first, then those the last answer named
/// (replaced with each answer, as wulf-agent does), and which of them failed lately.
#[derive(Debug, Clone)]
pub struct Heads {
    configured: Vec<String>,
    list: Vec<String>,
    avoid: HashMap<String, Instant>,
}

impl Heads {
    /// `configured` are normalised base URLs.
    pub fn new(configured: Vec<String>) -> Heads {
        Heads {
            list: configured.clone(),
            configured,
            avoid: HashMap::new(),
        }
    }

    /// Every head known, configured ones first.
    #[cfg(test)]
    pub fn list(&self) -> &[String] {
        &self.list
    }

    /// Take the heads an answer named: configured heads first, then the others (sorted, so
    /// answers that name the same heads in another order change nothing).
    pub fn learn(&mut self, advertised: &[String]) {
        let mut learned: Vec<String> = advertised
            .iter()
            .filter_map(|h| normalize_head(h).ok())
            .filter(|h| !self.configured.contains(h))
            .collect();
        learned.sort();
        learned.dedup();
        if self.list[self.configured.len()..] != learned[..] {
            self.list.truncate(self.configured.len());
            self.list.extend(learned);
        }
    }

    /// `head` failed: try it after the others for a while.
    pub fn failed(&mut self, head: &str, now: Instant) {
        self.avoid.insert(head.to_string(), now + AVOID);
    }

    /// `head` answered.
    pub fn answered(&mut self, head: &str) {
        if !self.avoid.is_empty() {
            self.avoid.remove(head);
        }
    }

    fn avoided(&self, head: &str, now: Instant) -> bool {
        self.avoid.get(head).is_some_and(|&until| until > now)
    }

    /// The heads to try, in order, for a node on `current`: `current`, then the others
    /// starting `spread` places along (so the nodes of a dead head spread over the rest);
    /// heads that failed lately come last.
    pub fn order(&self, current: &str, spread: usize, now: Instant) -> Vec<String> {
        let mut others: Vec<&String> = self.list.iter().filter(|h| *h != current).collect();
        if !others.is_empty() {
            let k = spread % others.len();
            others.rotate_left(k);
        }
        let (mut ok, bad): (Vec<&str>, Vec<&str>) = std::iter::once(current)
            .chain(others.into_iter().map(String::as_str))
            .partition(|h| !self.avoided(h, now));
        ok.extend(bad);
        ok.into_iter().map(str::to_string).collect()
    }
}

/// A node's uid, name, MAC and IP (if it has one).
type NodeIds = (String, String, String, Option<String>);

/// The node's `ip` field, if set.
fn ip_of(o: &Value) -> Option<String> {
    o.get("ip").and_then(Value::as_str).map(str::to_string)
}

/// Make sure `n` simulated nodes exist; returns (uid, name, mac, ip) of the first `n` by
/// index.
fn ensure_nodes(c: &Client, n: usize, create: bool) -> anyhow::Result<Vec<NodeIds>> {
    let list: Vec<Value> = c.get("/node?fields=uid,name,mac,ip,type,index")?;
    let mut sims: Vec<(u64, String, String, String, Option<String>)> = list
        .iter()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some("simulated"))
        .filter_map(|o| {
            Some((
                o.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX),
                o.get("uid")?.as_str()?.to_string(),
                o.get("name")?.as_str()?.to_string(),
                o.get("mac")?.as_str()?.to_string(),
                ip_of(o),
            ))
        })
        .collect();
    if sims.len() < n {
        if !create {
            anyhow::bail!(
                "the cluster has {} simulated nodes, {n} asked for (drop --no-create to make them)",
                sims.len()
            );
        }
        let taken: std::collections::HashSet<String> = list
            .iter()
            .filter_map(|o| o.get("mac").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut docs = Vec::new();
        let mut i = 0usize;
        while sims.len() + docs.len() < n {
            let mac = mac_of(i);
            i += 1;
            if !taken.contains(&mac) {
                docs.push(serde_json::json!({"mac": mac, "type": "simulated"}));
            }
        }
        eprintln!("creating {} simulated nodes", docs.len());
        for chunk in docs.chunks(10_000) {
            let made: Vec<Value> = c.send("POST", "/node?fields=uid,name,mac,ip,index", chunk)?;
            for o in made {
                sims.push((
                    o.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX),
                    o.get("uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    o.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    o.get("mac")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    ip_of(&o),
                ));
            }
        }
    }
    sims.sort();
    Ok(sims
        .into_iter()
        .take(n)
        .map(|(_, u, name, m, ip)| (u, name, m, ip))
        .collect())
}

/// A boot script without an enrollment token: the head's reasons (the node is still up at
/// the head, say, after a simulator stopped with `--crash`). A real node asks again later.
#[derive(Debug)]
pub struct NotYet {
    mac: String,
    why: String,
}

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cannot boot: {}", self.mac, self.why)
    }
}

impl std::error::Error for NotYet {}

/// Fetch a node's boot script as its firmware would, from the first of `heads` that answers,
/// and enroll as its agent would: trade the script's one-time token (`wulf.enroll=`) at that
/// head for the node's credential of this boot. Returns the script's parameters, with the
/// credential as `cred`, and the head that served it.
fn boot(
    http: &ureq::Agent,
    heads: &[String],
    mac: &str,
) -> anyhow::Result<(BTreeMap<String, String>, String)> {
    let mut errors = Vec::new();
    for base in heads {
        let url = format!("{base}/boot/ipxe?mac={mac}");
        let script = match http.get(&url).call() {
            Ok(r) => r
                .into_string()
                .map_err(|e| anyhow::anyhow!("GET {url}: {e}")),
            Err(ureq::Error::Status(code, _)) if code < 500 => {
                anyhow::bail!("GET {url}: HTTP {code}")
            }
            Err(e) => Err(anyhow::anyhow!("GET {url}: {e}")),
        };
        let script = match script {
            Ok(s) => s,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let mut p = script_params(&script);
        let (Some(node), Some(token)) = (p.get("node"), p.get("enroll")) else {
            let why: Vec<&str> = script
                .lines()
                .filter_map(|l| l.strip_prefix("echo "))
                .collect();
            let why = why.join("; ");
            // The head's words for a node it still sees up (crates/wulfd/src/enroll).
            if why.contains("carries no enrollment") {
                return Err(NotYet {
                    mac: mac.to_string(),
                    why,
                }
                .into());
            }
            anyhow::bail!("{mac} cannot boot: {why}");
        };
        let req = wulf_api::enroll::EnrollRequest {
            node: node.clone(),
            token: token.clone(),
        };
        let c = Client::with_agent(base, None, http.clone());
        let reply: wulf_api::enroll::EnrollReply = c
            .send("POST", wulf_api::enroll::PATH, &req)
            .map_err(|e| anyhow::anyhow!("{mac} cannot enroll at {base}: {e}"))?;
        p.insert("cred".into(), reply.credential);
        return Ok((p, base.clone()));
    }
    anyhow::bail!("{}", errors.join("; "))
}

/// Boot as [`boot`] does; while the head hands out no enrollment (the node is still up there
/// after an earlier simulator stopped with `--crash`), ask again every 2 s for up to 2
/// minutes, as a real node's firmware keeps asking.
fn boot_patiently(
    http: &ureq::Agent,
    heads: &[String],
    mac: &str,
    name: &str,
) -> anyhow::Result<(BTreeMap<String, String>, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut said = false;
    loop {
        match boot(http, heads, mac) {
            Err(e) if e.downcast_ref::<NotYet>().is_some() && Instant::now() < deadline => {
                if !said {
                    eprintln!("sim: {name}: {e}; asking again until the head lets it boot");
                    said = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

fn report_of(n: &SimNode, state: ReportState, rng: &mut impl rand::Rng) -> StatusReport {
    let first = n.reports == 0;
    let gib = 1u64 << 30;
    StatusReport {
        node: n.uid.clone(),
        state,
        boot_id: Some(n.boot_id.clone()),
        uptime_secs: n.booted.elapsed().as_secs_f64(),
        interval_secs: n.interval,
        busy: n.busy,
        load: [rng.gen_range(0.0..2.0), 0.5, 0.25],
        ram_total: 64 * gib,
        ram_free: rng.gen_range(32 * gib..60 * gib),
        ip: n.ip.clone(),
        hostname: (!n.busy).then(|| n.name.clone()),
        kernel: (!n.busy).then(|| "6.1.0-simulated".to_string()),
        cmdline: (!n.busy)
            .then(|| format!("wulf.node={} wulf.style=simulated wulf.enroll=***", n.uid)),
        modules: (!n.busy).then(|| vec!["e1000".to_string(), "ext4".to_string()]),
        selinux: (!n.busy).then(|| "disabled".to_string()),
        hardware: first.then(|| Hardware {
            cpu_model: "Simulated CPU".into(),
            cpus: 64,
            ram_total: 64 * gib,
            system_vendor: "wulf".into(),
            product_name: "simulated node".into(),
            nics: vec![Nic {
                name: "eth0".into(),
                mac: n.mac.clone(),
                speed_mbps: Some(25_000),
                mtu: 1500,
            }],
            disks: vec![Disk {
                name: "sda".into(),
                bytes: 960 * gib,
                model: "Simulated SSD".into(),
                rotational: false,
            }],
            ..Default::default()
        }),
        agent: Some(AgentCost {
            version: format!("sim {}", env!("CARGO_PKG_VERSION")),
            reports: n.reports,
            ..Default::default()
        }),
    }
}

/// Send one report to the node's head, or when that head cannot take it (no connection, a
/// timeout, HTTP 5xx) to the others in turn; the node stays on the head that took it. Apply
/// what the head answers and learn the heads it names. `taken` counts reports per head.
fn send(
    http: &ureq::Agent,
    heads: &mut Heads,
    n: &mut SimNode,
    state: ReportState,
    rng: &mut impl rand::Rng,
    stats: &Stats,
    taken: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    let r = report_of(n, state, rng);
    let mut errors: Vec<String> = Vec::new();
    for head in heads.order(&n.head, n.spread, Instant::now()) {
        let c = Client::with_agent(&head, Some(n.token.clone()), http.clone());
        let reply: ReportReply = match c.send("POST", "/node/status", &r) {
            Ok(reply) => reply,
            // The same request would be refused by every head.
            Err(e @ ApiError::Status { status, .. }) if status < 500 => return Err(e.to_string()),
            Err(e) => {
                heads.failed(&head, Instant::now());
                errors.push(format!("{head}: {e}"));
                continue;
            }
        };
        heads.answered(&head);
        heads.learn(&reply.heads);
        if head != n.head {
            let why = match errors.first() {
                Some(e) => e.clone(),
                None => format!("{} failed lately", n.head),
            };
            stats.failover(format!(
                "{} moved from {} to {head} ({why})",
                n.name, n.head
            ));
            n.head = head.clone();
        }
        *taken.entry(head).or_default() += 1;
        n.reports += 1;
        n.interval =
            wulf_model::status_secs(&reply.attributes).unwrap_or(wulf_model::DEFAULT_STATUS_SECS);
        n.busy = reply
            .attributes
            .get("_busy")
            .and_then(|v| wulf_model::parse_bool(v))
            .unwrap_or(false);
        n.orphan
            .set_settings(orphan::Settings::from_attributes(&reply.attributes).0);
        return Ok(());
    }
    Err(match errors.len() {
        1 => errors.remove(0),
        _ => format!("no head took the report: {}", errors.join("; ")),
    })
}

/// Run one worker's share of the nodes until `stop`: their reports, and their orphan watch.
fn worker(heads: Vec<String>, nodes: Vec<Node>, opts: SimOptions, ctx: Arc<commands::Ctx>) {
    let (stats, stop) = (ctx.stats.clone(), ctx.stop.clone());
    let mut rng = rand::thread_rng();
    // A new connection for each report, as wulf-agent opens one (docs/decisions.md): the
    // head sees one TCP and TLS handshake per report, resumed with the session ticket of an
    // earlier one (the shared TLS config keeps the tickets).
    let http = agent(
        ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .max_idle_connections(0),
        &opts.tls,
    );
    let mut heads = Heads::new(heads);
    let mut taken: BTreeMap<String, u64> = BTreeMap::new();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Reverse((lock(n).first_report, i)))
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let Some(Reverse((at, i))) = due.peek().copied() else {
            break;
        };
        let now = Instant::now();
        if at > now {
            std::thread::sleep((at - now).min(Duration::from_millis(100)));
            continue;
        }
        due.pop();
        let t = Instant::now();
        let mut guard = lock(&nodes[i]);
        let n = &mut *guard;
        if n.phase == Phase::Up && n.orphan.may_contact(t) {
            match send(
                &http,
                &mut heads,
                n,
                ReportState::Up,
                &mut rng,
                &stats,
                &mut taken,
            ) {
                Ok(()) => {
                    // Latency from when the report was due, not from when it was sent: a
                    // report that waited for the worker counts its wait (no coordinated
                    // omission).
                    let late = Instant::now().saturating_duration_since(at);
                    stats.record(late.as_micros().min(u32::MAX as u128) as u32);
                    if n.orphan.answered(Instant::now()).is_some() {
                        stats.rejoins.fetch_add(1, Ordering::Relaxed);
                        // A node that rejoins sends its hardware again.
                        n.reports = 0;
                    }
                }
                Err(e) => stats.error(format!("{}: {e}", n.name)),
            }
        }
        if n.phase == Phase::Up {
            let pct = n.cpu_pct();
            let events = n.orphan.tick(Instant::now(), Some(pct));
            commands::orphan_events(&ctx, &nodes[i], n, events);
        }
        // Next report one interval after this one was due (not after it finished), so a slow
        // answer does not stretch every node's interval; a worker that falls behind sends
        // the late ones at once and their latency shows it.
        let next = at + Duration::from_secs(u64::from(n.interval));
        drop(guard);
        due.push(Reverse((next, i)));
    }
    if !opts.crash {
        for node in &nodes {
            let mut guard = lock(node);
            let n = &mut *guard;
            if n.reports > 0 && n.phase == Phase::Up && n.orphan.may_contact(Instant::now()) {
                let mut ignored = BTreeMap::new();
                if let Err(e) = send(
                    &http,
                    &mut heads,
                    n,
                    ReportState::Shutdown,
                    &mut rng,
                    &stats,
                    &mut ignored,
                ) {
                    stats.unsaid.fetch_add(1, Ordering::Relaxed);
                    stats.error(format!("{}: {e}", n.name));
                }
            }
        }
    }
    if let Ok(mut m) = stats.per_head.lock() {
        for (h, k) in taken {
            m.entry(h).or_default().0 += k;
        }
        for n in &nodes {
            m.entry(lock(n).head.clone()).or_default().1 += 1;
        }
    };
}

/// Run the simulator. Returns once it has stopped.
pub fn run(c: &Client, opts: SimOptions, stop: Arc<AtomicBool>) -> anyhow::Result<Arc<Stats>> {
    if opts.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let heads: Vec<String> = if opts.heads.is_empty() {
        vec![normalize_head(c.base()).map_err(|e| anyhow::anyhow!(e))?]
    } else {
        opts.heads.clone()
    };
    let list = ensure_nodes(c, opts.nodes, opts.create)?;
    let http = agent(
        ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(TIMEOUT),
        &opts.tls,
    );
    let stats = Arc::new(Stats::default());
    // Boot every node: its firmware fetches the boot script (the head marks it booting).
    // Node i boots from head i mod H (another if that one does not answer).
    let boot_started = Instant::now();
    let mut sims = Vec::with_capacity(list.len());
    let conns = opts.connections.clamp(1, list.len());
    {
        let chunks: Vec<Vec<(usize, NodeIds)>> = (0..conns)
            .map(|w| {
                list.iter()
                    .cloned()
                    .enumerate()
                    .skip(w)
                    .step_by(conns)
                    .collect()
            })
            .collect();
        let results: Vec<anyhow::Result<Vec<(usize, SimNode)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let http = http.clone();
                    let heads = &heads;
                    let stats = &stats;
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|(i, (uid, name, mac, ip))| {
                                let mut order = heads.clone();
                                order.rotate_left(i % heads.len());
                                let (p, head) = boot_patiently(&http, &order, &mac, &name)?;
                                if p.get("node") != Some(&uid) {
                                    anyhow::bail!("the head booted {mac} as another node");
                                }
                                if head != order[0] {
                                    stats.failover(format!(
                                        "{name} booted from {head}: {} did not answer",
                                        order[0]
                                    ));
                                }
                                let cred = p.get("cred").cloned().unwrap_or_default();
                                let mut n = SimNode::new(uid, name, mac, &cred, head);
                                n.ip = ip.or_else(|| {
                                    wulf_api::status::local_ip_toward(&n.head)
                                        .map(|a| a.to_string())
                                });
                                n.spread = i / heads.len();
                                Ok((i, n))
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a boot thread failed")))
                })
                .collect()
        });
        for r in results {
            sims.extend(r?);
        }
    }
    eprintln!(
        "{} simulated nodes booted in {:.1} s; reporting to {} from {conns} threads (a new connection per report)",
        sims.len(),
        boot_started.elapsed().as_secs_f64(),
        match heads.as_slice() {
            [one] => one.clone(),
            all => format!("{} heads ({})", all.len(), all.join(", ")),
        }
    );
    let rt = commands::runtime()
        .map_err(|e| anyhow::anyhow!("cannot start the command pollers' runtime: {e}"))?;
    let ctx = Arc::new(commands::Ctx {
        heads: heads.clone(),
        // A new connection for each of these rare requests (reports around reboots, results
        // of sleeps): a pooled one the head closed meanwhile would fail the POST.
        http: agent(
            ureq::AgentBuilder::new()
                .timeout_connect(CONNECT_TIMEOUT)
                .timeout(TIMEOUT)
                .max_idle_connections(0),
            &opts.tls,
        ),
        stats: stats.clone(),
        stop: stop.clone(),
        ignore_soft: opts.ignore_soft.clone(),
        rt: rt.handle().clone(),
        net: poll::Net::new(opts.tls.clone()),
    });
    // A long poll holds an open file; the reporting threads and everything else need some.
    let reserve = 2 * conns + 512;
    let want = opts.polls.unwrap_or(sims.len()).min(sims.len());
    let files = commands::raise_fd_limit((want + reserve) as u64);
    let polls = want.min(
        usize::try_from(files)
            .unwrap_or(usize::MAX)
            .saturating_sub(reserve),
    );
    if polls < want {
        eprintln!(
            "sim: {polls} of the {want} nodes poll for commands: {files} open files allowed (ulimit -n), one per poll and {reserve} for the rest"
        );
    }
    // Each node's first report (and then its first command poll) at a random moment of the
    // simulated boot time.
    let start = Instant::now();
    let mut rng = rand::thread_rng();
    let mut shares: Vec<Vec<Node>> = (0..conns).map(|_| Vec::new()).collect();
    for (i, mut n) in sims {
        if opts.boot_secs > 0.0 {
            n.first_report = start + Duration::from_secs_f64(rng.gen_range(0.0..opts.boot_secs));
        } else {
            n.first_report = start;
        }
        let node = Arc::new(Mutex::new(n));
        if i < polls {
            commands::spawn_poller(node.clone(), ctx.clone(), i);
        }
        shares[i % conns].push(node);
    }
    let started = Instant::now();
    let mut handles = Vec::with_capacity(shares.len());
    for share in shares {
        let (heads, opts, ctx) = (heads.clone(), opts.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("sim-report".into())
            .spawn(move || worker(heads, share, opts, ctx));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The workers already started stop and send their shutdown reports.
                stop.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                rt.shutdown_background();
                anyhow::bail!("cannot start a reporting thread: {e}");
            }
        }
    }
    let mut last_print = Instant::now();
    let mut last_count = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if opts
            .duration
            .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
        {
            stop.store(true, Ordering::Relaxed);
        }
        if opts.stats_every > 0.0 && last_print.elapsed().as_secs_f64() >= opts.stats_every {
            let w = stats.take_window();
            let n = stats.reports.load(Ordering::Relaxed);
            let secs = last_print.elapsed().as_secs_f64();
            let (p50, p99, max) = percentiles(w);
            eprintln!(
                "[{:>6.0} s] {:>8.0} reports/s  p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.1} ms  errors {}  failovers {}",
                started.elapsed().as_secs_f64(),
                (n - last_count) as f64 / secs,
                stats.errors.load(Ordering::Relaxed),
                stats.failovers()
            );
            last_count = n;
            last_print = Instant::now();
        }
    }
    for h in handles {
        let _ = h.join();
    }
    // Polls still waiting at the head are dropped with their connections.
    rt.shutdown_background();
    stats.take_window();
    let all = stats.all.lock().map(|a| a.clone()).unwrap_or_default();
    let n = stats.reports.load(Ordering::Relaxed);
    let (p50, p99, max) = percentiles(all);
    eprintln!(
        "sim: {n} reports in {:.1} s ({:.0}/s), latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms, {} errors, {} failovers{}",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64().max(0.001),
        stats.errors.load(Ordering::Relaxed),
        stats.failovers(),
        match (opts.crash, stats.unsaid.load(Ordering::Relaxed)) {
            (true, _) => "; nodes stopped without shutdown reports".to_string(),
            (false, 0) => "; nodes reported a clean shutdown".to_string(),
            (false, k) => format!("; {k} nodes could not report their shutdown"),
        }
    );
    let per_head = stats.per_head();
    if per_head.len() > 1 || stats.failovers() > 0 {
        let parts: Vec<String> = per_head
            .iter()
            .map(|(h, (r, k))| format!("{h} took {r} reports, has {k} nodes"))
            .collect();
        eprintln!("sim: per head: {}", parts.join("; "));
    }
    if let Ok(Some(e)) = stats.last_failover.lock().map(|l| l.clone()) {
        eprintln!("sim: last failover: {e}");
    }
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    if count(&stats.commands) + count(&stats.refused) + count(&stats.orphans) > 0 {
        eprintln!(
            "sim: commands: {} run, {} refused; {} reboots, {} shutdowns, {} soft requests ignored; {} orphans, {} rejoined",
            count(&stats.commands),
            count(&stats.refused),
            count(&stats.reboots),
            count(&stats.shutdowns),
            count(&stats.ignored),
            count(&stats.orphans),
            count(&stats.rejoins)
        );
    }
    if let Ok(Some(e)) = stats.last_error.lock().map(|l| l.clone()) {
        eprintln!("sim: last error: {e}");
    }
    Ok(stats)
}

/// A head started for `wulf sim --local-head`: `wulfd` beside this binary, data in
/// `./wulf-data`, API on 127.0.0.1:8740, no DHCP/TFTP/DNS (simulated nodes need none).
/// Stopped (SIGTERM, then waited for) when dropped, after the simulated nodes stopped: the
/// terminal's Ctrl-C does not reach it.
pub struct LocalHead {
    child: std::process::Child,
    pub url: String,
    pub token: String,
    /// TLS trusting the head's cluster CA (its data directory's tls/ca.pem).
    pub tls: Option<Arc<wulf_api::tls::ClientConfig>>,
    _config: tempfile::NamedTempFile,
}

impl LocalHead {
    pub fn start() -> anyhow::Result<LocalHead> {
        use std::io::Write as _;
        let exe = std::env::current_exe()?;
        let wulfd = exe.with_file_name("wulfd");
        if !wulfd.exists() {
            anyhow::bail!(
                "{} not found: build it with `cargo build --release` (wulfd sits beside wulf)",
                wulfd.display()
            );
        }
        let data = std::env::current_dir()?.join("wulf-data");
        let listen = "127.0.0.1:8740";
        if std::net::TcpStream::connect(listen).is_ok() {
            anyhow::bail!(
                "something already listens on {listen}: a head is running; run `wulf sim` without --local-head to use it"
            );
        }
        let mut config = tempfile::NamedTempFile::new()?;
        writeln!(
            config,
            "data_dir = {:?}\nlisten = \"{listen}\"\nlog = \"warn\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false",
            data.display().to_string()
        )?;
        let log = std::fs::File::create(std::env::temp_dir().join("wulf-sim-wulfd.log"))?;
        use std::os::unix::process::CommandExt as _;
        let child = std::process::Command::new(&wulfd)
            // A process group of its own: Ctrl-C at the terminal goes to the simulator alone,
            // whose nodes then report their clean shutdown to this head before it is
            // stopped (on drop).
            .process_group(0)
            .arg("--config")
            .arg(config.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", wulfd.display()))?;
        let mut head = LocalHead {
            child,
            url: format!("https://{listen}"),
            token: String::new(),
            tls: None,
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = head.child.try_wait() {
                anyhow::bail!(
                    "wulfd exited ({st}); see {}",
                    std::env::temp_dir().join("wulf-sim-wulfd.log").display()
                );
            }
            let ca = std::fs::read(data.join("tls/ca.pem")).ok();
            let tls = ca.and_then(|pem| wulf_api::tls::trust_ca(&pem).ok());
            if let (Ok(t), Some(tls)) = (std::fs::read_to_string(data.join("admin.token")), tls) {
                let c = Client::with_tls(&head.url, Some(t.trim().to_string()), tls.clone());
                if c.get::<Value>("/info").is_ok() {
                    head.token = t.trim().to_string();
                    head.tls = Some(tls);
                    break;
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("wulfd did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "started a head: wulfd at {} (data in {}); in another shell: WULF_URL={} wulf node status",
            head.url,
            data.display(),
            head.url
        );
        Ok(head)
    }
}

impl Drop for LocalHead {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Print the status summary once all `n` simulated nodes are up (for --local-head).
pub fn show_when_up(c: &Client, n: usize, stop: &AtomicBool) {
    let mut since = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = crate::status::summary(c, None, since) else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        since = Some(s.changes);
        let up: usize = s
            .groups
            .iter()
            .filter(|g| g.state == "up")
            .map(|g| g.count)
            .sum();
        if up >= n {
            println!("\n$ wulf node status");
            crate::status::print_summary(&s);
            if let Ok(list) = crate::status::nodes(c, None, 1) {
                println!("\n$ wulf node status -l");
                crate::status::print_long(&list);
            }
            println!("\nSimulated nodes keep reporting; Ctrl-C stops them (they report a clean shutdown).");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_from_scripts() {
        let s = "#!ipxe\necho hi\nkernel --name vmlinuz http://h/boot/file/abc initrd=initramfs quiet wulf.head=http://h:8740 wulf.node=u1 wulf.cred=c0ffee\nboot\n";
        let p = script_params(s);
        assert_eq!(p["head"], "http://h:8740");
        assert_eq!(p["node"], "u1");
        assert_eq!(p["cred"], "c0ffee");
        assert!(script_params("#!ipxe\necho wulf: no\nsleep 20\n").is_empty());
    }

    #[test]
    fn macs_are_local_and_distinct() {
        assert_eq!(mac_of(0), "02:57:00:00:00:00");
        assert_eq!(mac_of(0x0102_0304), "02:57:01:02:03:04");
    }

    #[test]
    fn head_urls_are_normalised() {
        assert_eq!(
            normalize_head("10.0.0.1:8740/").unwrap(),
            "https://10.0.0.1:8740"
        );
        assert_eq!(normalize_head(" http://h:1 ").unwrap(), "http://h:1");
        assert_eq!(normalize_head("https://h/").unwrap(), "https://h");
        assert!(normalize_head("ftp://h").is_err());
        assert!(normalize_head("http://").is_err());
        assert!(normalize_head("http://h/api").is_err());
    }

    #[test]
    fn learned_heads_come_after_configured_ones() {
        let mut h = Heads::new(vec!["http://a".into(), "http://b".into()]);
        h.learn(&["http://d/".into(), "http://b".into(), "http://c".into()]);
        assert_eq!(h.list(), ["http://a", "http://b", "http://c", "http://d"]);
        // Replaced, not accumulated; the order of an answer does not matter.
        h.learn(&["http://c".into(), "http://a".into()]);
        assert_eq!(h.list(), ["http://a", "http://b", "http://c"]);
        h.learn(&[]);
        assert_eq!(h.list(), ["http://a", "http://b"]);
    }

    #[test]
    fn failover_order_spreads_and_avoids_failed_heads() {
        let now = Instant::now();
        let mut h = Heads::new(vec![
            "http://a".into(),
            "http://b".into(),
            "http://c".into(),
        ]);
        assert_eq!(
            h.order("http://a", 0, now),
            ["http://a", "http://b", "http://c"]
        );
        assert_eq!(
            h.order("http://a", 1, now),
            ["http://a", "http://c", "http://b"]
        );
        assert_eq!(
            h.order("http://b", 2, now),
            ["http://b", "http://a", "http://c"]
        );
        // A head not (or no longer) in the list is still tried first.
        assert_eq!(
            h.order("http://x", 0, now),
            ["http://x", "http://a", "http://b", "http://c"]
        );
        // A head that failed lately comes last, until AVOID has passed or it answers.
        h.failed("http://a", now);
        assert_eq!(
            h.order("http://a", 0, now),
            ["http://b", "http://c", "http://a"]
        );
        assert_eq!(
            h.order("http://a", 0, now + AVOID),
            ["http://a", "http://b", "http://c"]
        );
        h.answered("http://a");
        assert_eq!(
            h.order("http://a", 0, now),
            ["http://a", "http://b", "http://c"]
        );
    }

    /// A head that answers every request with `reply` (status 200, JSON), counting requests.
    fn fake_head(reply: String) -> (String, Arc<AtomicU64>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let (reply, seen) = (reply.clone(), seen.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        seen.fetch_add(1, Ordering::Relaxed);
                        let out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        if w.write_all(out.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, count)
    }

    fn node_on(head: &str) -> SimNode {
        SimNode::new("u1".into(), "n1".into(), mac_of(1), "c", head.into())
    }

    #[test]
    fn a_node_moves_to_a_live_head_and_learns_the_others() {
        // The node's head refuses connections (port 1); the configured second head answers
        // and names a third, which the node moves to when the second one stops answering.
        let (c, c_count) =
            fake_head(r#"{"name":"n1","attributes":{"_status_secs":"7"},"heads":[]}"#.into());
        let (b, b_count) = fake_head(format!(
            r#"{{"name":"n1","attributes":{{}},"heads":["{c}"]}}"#
        ));
        let dead = "http://127.0.0.1:1".to_string();
        let http = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .build();
        let mut heads = Heads::new(vec![dead.clone(), b.clone()]);
        let mut n = node_on(&dead);
        let stats = Stats::default();
        let mut taken = BTreeMap::new();
        let mut rng = rand::thread_rng();
        send(
            &http,
            &mut heads,
            &mut n,
            ReportState::Up,
            &mut rng,
            &stats,
            &mut taken,
        )
        .unwrap();
        assert_eq!(n.head, b);
        assert_eq!((n.reports, n.uid.as_str()), (1, "u1"));
        assert_eq!(stats.failovers(), 1);
        let why = stats.last_failover.lock().unwrap().clone().unwrap();
        assert!(
            why.starts_with(&format!("n1 moved from {dead} to {b} ({dead}: ")),
            "{why}"
        );
        assert_eq!(heads.list(), [dead.clone(), b.clone(), c.clone()]);
        // The next report goes straight to b.
        send(
            &http,
            &mut heads,
            &mut n,
            ReportState::Up,
            &mut rng,
            &stats,
            &mut taken,
        )
        .unwrap();
        assert_eq!((stats.failovers(), b_count.load(Ordering::Relaxed)), (1, 2));
        // A node still on the dead head skips it while it is avoided.
        let mut m = node_on(&dead);
        send(
            &http,
            &mut heads,
            &mut m,
            ReportState::Up,
            &mut rng,
            &stats,
            &mut taken,
        )
        .unwrap();
        assert_eq!(m.head, b);
        assert!(stats
            .last_failover
            .lock()
            .unwrap()
            .clone()
            .unwrap()
            .contains("failed lately"));
        // b goes away: the node moves on to c, which b's answer named.
        heads.failed(&b, Instant::now());
        send(
            &http,
            &mut heads,
            &mut n,
            ReportState::Up,
            &mut rng,
            &stats,
            &mut taken,
        )
        .unwrap();
        assert_eq!(n.head, c);
        assert_eq!(n.interval, 7);
        assert_eq!(c_count.load(Ordering::Relaxed), 1);
        assert_eq!(stats.failovers(), 3);
        assert_eq!(taken[&b], 3);
        assert_eq!(taken[&c], 1);
    }

    #[test]
    fn no_head_takes_the_report() {
        let http = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
        let mut heads = Heads::new(vec![
            "http://127.0.0.1:1".into(),
            "http://127.0.0.2:1".into(),
        ]);
        let mut n = node_on("http://127.0.0.1:1");
        let stats = Stats::default();
        let e = send(
            &http,
            &mut heads,
            &mut n,
            ReportState::Up,
            &mut rand::thread_rng(),
            &stats,
            &mut BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("no head took the report: http://127.0.0.1:1: "),
            "{e}"
        );
        assert!(e.contains("http://127.0.0.2:1: "), "{e}");
        assert_eq!(
            (n.head.as_str(), n.reports, stats.failovers()),
            ("http://127.0.0.1:1", 0, 0)
        );
    }

    #[test]
    fn percentile_math() {
        let (p50, p99, max) = percentiles((1..=100).map(|i| i * 1000).collect());
        assert_eq!((p50, p99, max), (51.0, 99.0, 100.0));
        assert_eq!(percentiles(vec![]), (0.0, 0.0, 0.0));
    }
}

//! `wulf sim`: simulated nodes in one process that speak the real protocol. Each one fetches
//! its iPXE boot script from the head (so the head sees it boot), takes its credential from
//! the parameters the script would put on a kernel command line, and reports status every
//! `_status_secs` with the node token, as `wulf-agent` does. When the simulator stops, its
//! nodes send a clean-shutdown report (or, with `--crash`, just go silent).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use wulf_api::status::{
    node_token, AgentCost, Disk, Hardware, Nic, ReportReply, ReportState, StatusReport,
};
use wulf_api::{ApiError, Client};

/// Simulated nodes get MACs 02:57:xx:xx:xx:xx (locally administered).
const MAC_PREFIX: [u8; 2] = [0x02, 0x57];

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: usize,
    /// Seconds to run (None: until SIGINT/SIGTERM).
    pub duration: Option<f64>,
    /// Simulated boot time: each node first reports after a random delay up to this.
    pub boot_secs: f64,
    /// Parallel connections to the head.
    pub connections: usize,
    /// Stop without clean-shutdown reports.
    pub crash: bool,
    /// Print throughput and latency every this many seconds (0: only at the end).
    pub stats_every: f64,
    /// Create missing simulated nodes.
    pub create: bool,
}

/// One simulated node.
struct SimNode {
    uid: String,
    name: String,
    mac: String,
    cred: String,
    booted: Instant,
    interval: u32,
    busy: bool,
    reports: u64,
    boot_id: String,
}

/// Shared counters.
#[derive(Default)]
pub struct Stats {
    reports: AtomicU64,
    errors: AtomicU64,
    /// Latencies (µs) since the last stats print.
    window: Mutex<Vec<u32>>,
    /// All latencies (µs).
    all: Mutex<Vec<u32>>,
    last_error: Mutex<Option<String>>,
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

/// Make sure `n` simulated nodes exist; returns (uid, name, mac) of the first `n` by index.
fn ensure_nodes(
    c: &Client,
    n: usize,
    create: bool,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let list: Vec<Value> = c.get("/node?fields=uid,name,mac,type,index")?;
    let mut sims: Vec<(u64, String, String, String)> = list
        .iter()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some("simulated"))
        .filter_map(|o| {
            Some((
                o.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX),
                o.get("uid")?.as_str()?.to_string(),
                o.get("name")?.as_str()?.to_string(),
                o.get("mac")?.as_str()?.to_string(),
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
            let made: Vec<Value> = c.send("POST", "/node?fields=uid,name,mac,index", chunk)?;
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
                ));
            }
        }
    }
    sims.sort();
    Ok(sims
        .into_iter()
        .take(n)
        .map(|(_, u, name, m)| (u, name, m))
        .collect())
}

/// Fetch a node's boot script as its firmware would, and take its credential from it.
fn boot(http: &ureq::Agent, base: &str, mac: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let url = format!("{base}/boot/ipxe?mac={mac}");
    let script = http
        .get(&url)
        .call()
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?
        .into_string()
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let p = script_params(&script);
    if !p.contains_key("cred") || !p.contains_key("node") {
        let why: Vec<&str> = script
            .lines()
            .filter_map(|l| l.strip_prefix("echo "))
            .collect();
        anyhow::bail!("{mac} cannot boot: {}", why.join("; "));
    }
    Ok(p)
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
        hostname: (!n.busy).then(|| n.name.clone()),
        kernel: (!n.busy).then(|| "6.1.0-simulated".to_string()),
        cmdline: (!n.busy)
            .then(|| format!("wulf.node={} wulf.style=simulated wulf.cred=***", n.uid)),
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

/// Send one report; apply what the head answers.
fn send(
    c: &Client,
    n: &mut SimNode,
    state: ReportState,
    rng: &mut impl rand::Rng,
) -> Result<(), ApiError> {
    let r = report_of(n, state, rng);
    let reply: ReportReply = c.send("POST", "/node/status", &r)?;
    n.reports += 1;
    n.interval = reply
        .attributes
        .get("_status_secs")
        .and_then(|v| v.parse().ok())
        .filter(|&s: &u32| s > 0)
        .unwrap_or(10);
    n.busy = reply
        .attributes
        .get("_busy")
        .and_then(|v| wulf_model::parse_bool(v))
        .unwrap_or(false);
    Ok(())
}

/// Run one worker's share of the nodes until `stop`.
fn worker(
    base: String,
    mut nodes: Vec<SimNode>,
    opts: SimOptions,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::thread_rng();
    // One client (one keep-alive connection) per node token would be wasteful: build the
    // request per node on one agent.
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_idle_connections_per_host(1)
        .build();
    let clients: Vec<Client> = nodes
        .iter()
        .map(|n| Client::with_agent(&base, Some(node_token(&n.uid, &n.cred)), http.clone()))
        .collect();
    let start = Instant::now();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = nodes
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let d = if opts.boot_secs > 0.0 {
                rng.gen_range(0.0..opts.boot_secs)
            } else {
                0.0
            };
            Reverse((start + Duration::from_secs_f64(d), i))
        })
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
        match send(&clients[i], &mut nodes[i], ReportState::Up, &mut rng) {
            Ok(()) => stats.record(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(e) => stats.error(format!("{}: {e}", nodes[i].name)),
        }
        // Next report one interval after this one was due (not after it finished), so a slow
        // answer does not stretch every node's interval.
        let mut next = at + Duration::from_secs(u64::from(nodes[i].interval));
        if next < Instant::now() {
            next = Instant::now();
        }
        due.push(Reverse((next, i)));
    }
    if !opts.crash {
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.reports > 0 {
                if let Err(e) = send(&clients[i], n, ReportState::Shutdown, &mut rng) {
                    stats.error(format!("{}: {e}", n.name));
                }
            }
        }
    }
}

/// Run the simulator. Returns once it has stopped.
pub fn run(c: &Client, opts: SimOptions, stop: Arc<AtomicBool>) -> anyhow::Result<Arc<Stats>> {
    if opts.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let list = ensure_nodes(c, opts.nodes, opts.create)?;
    let base = c.base().to_string();
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    // Boot every node: its firmware fetches the boot script (the head marks it booting).
    let boot_started = Instant::now();
    let mut sims = Vec::with_capacity(list.len());
    let conns = opts.connections.clamp(1, list.len());
    {
        let chunks: Vec<Vec<(String, String, String)>> = (0..conns)
            .map(|w| list.iter().skip(w).step_by(conns).cloned().collect())
            .collect();
        let results: Vec<anyhow::Result<Vec<SimNode>>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let http = http.clone();
                    let base = base.clone();
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|(uid, name, mac)| {
                                let p = boot(&http, &base, &mac)?;
                                if p.get("node") != Some(&uid) {
                                    anyhow::bail!("the head booted {mac} as another node");
                                }
                                Ok(SimNode {
                                    uid,
                                    name,
                                    mac,
                                    cred: p.get("cred").cloned().unwrap_or_default(),
                                    booted: Instant::now(),
                                    interval: 10,
                                    busy: false,
                                    reports: 0,
                                    boot_id: format!("{:032x}", rand::random::<u128>()),
                                })
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
        "{} simulated nodes booted in {:.1} s; reporting over {conns} connections",
        sims.len(),
        boot_started.elapsed().as_secs_f64()
    );
    let stats = Arc::new(Stats::default());
    let mut shares: Vec<Vec<SimNode>> = (0..conns).map(|_| Vec::new()).collect();
    for (i, n) in sims.into_iter().enumerate() {
        shares[i % conns].push(n);
    }
    let started = Instant::now();
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (base, opts, stats, stop) =
                (base.clone(), opts.clone(), stats.clone(), stop.clone());
            std::thread::spawn(move || worker(base, share, opts, stats, stop))
        })
        .collect();
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
                "[{:>6.0} s] {:>8.0} reports/s  p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.1} ms  errors {}",
                started.elapsed().as_secs_f64(),
                (n - last_count) as f64 / secs,
                stats.errors.load(Ordering::Relaxed)
            );
            last_count = n;
            last_print = Instant::now();
        }
    }
    for h in handles {
        let _ = h.join();
    }
    stats.take_window();
    let all = stats.all.lock().map(|a| a.clone()).unwrap_or_default();
    let n = stats.reports.load(Ordering::Relaxed);
    let (p50, p99, max) = percentiles(all);
    eprintln!(
        "sim: {n} reports in {:.1} s ({:.0}/s), latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms, {} errors{}",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64().max(0.001),
        stats.errors.load(Ordering::Relaxed),
        if opts.crash { "; nodes stopped without shutdown reports" } else { "; nodes reported a clean shutdown" }
    );
    if let Ok(Some(e)) = stats.last_error.lock().map(|l| l.clone()) {
        eprintln!("sim: last error: {e}");
    }
    Ok(stats)
}

/// A head started for `wulf sim --local-head`: `wulfd` beside this binary, data in
/// `./wulf-data`, API on 127.0.0.1:8740, no DHCP/TFTP/DNS (simulated nodes need none).
/// Stopped (SIGTERM, then waited for) when dropped.
pub struct LocalHead {
    child: std::process::Child,
    pub url: String,
    pub token: String,
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
        let child = std::process::Command::new(&wulfd)
            .arg("--config")
            .arg(config.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", wulfd.display()))?;
        let mut head = LocalHead {
            child,
            url: format!("http://{listen}"),
            token: String::new(),
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
            if let Ok(t) = std::fs::read_to_string(data.join("admin.token")) {
                let c = Client::new(&head.url, Some(t.trim().to_string()));
                if c.get::<Value>("/info").is_ok() {
                    head.token = t.trim().to_string();
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
    fn percentile_math() {
        let (p50, p99, max) = percentiles((1..=100).map(|i| i * 1000).collect());
        assert_eq!((p50, p99, max), (51.0, 99.0, 100.0));
        assert_eq!(percentiles(vec![]), (0.0, 0.0, 0.0));
    }
}

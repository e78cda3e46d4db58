//! `wulf sim --boot-storm N`: N nodes power on at once and boot the way real ones do against
//! a running head, from inside a network namespace whose interface is on the head's cluster
//! network. Each node asks DHCP as BIOS PXE firmware (the answer names the TFTP loader),
//! fetches that loader whole over TFTP, asks DHCP again as iPXE (the answer is its boot
//! script's URL), fetches the script, downloads kernel, initramfs and image in full (the image
//! with the `Authorization: Bearer enroll:UID:TOKEN` header wulf-init sends) and checks each
//! against the SHA-256 its URL or `wulf.image_sha256` names, then enrolls and reports status
//! as the agent does (the simulator's own code, see [`super::send`]), so the head shows it
//! `up`. Every TFTP and HTTP request of a node comes from the address DHCP gave it: the
//! storm adds that address to its interface and binds the node's sockets to it.
//!
//! The nodes are normal (not simulated) nodes with MACs 02:53:xx:xx:xx:xx; missing ones are
//! created with `_boot_config` set to `--boot-config`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use wulf_api::status::ReportState;
use wulf_api::Client;

mod dhcp;
mod fetch;
mod swarm;

use dhcp::Firmware;

/// Boot-storm nodes get MACs 02:53:xx:xx:xx:xx (locally administered).
const MAC_PREFIX: [u8; 2] = [0x02, 0x53];

#[derive(Debug, Clone)]
pub struct StormOptions {
    pub nodes: usize,
    /// Every node powers on at a random moment within this many seconds of the start.
    pub spread: f64,
    /// A node that is not up this many seconds after its power-on has failed.
    pub node_timeout: f64,
    /// Nodes booting at the same time, at most.
    pub concurrency: usize,
    /// The interface on the head's cluster network.
    pub iface: String,
    /// `_boot_config` of the nodes this creates.
    pub boot_config: Option<String>,
    pub tls: Option<Arc<wulf_api::tls::ClientConfig>>,
}

fn mac_of(i: usize) -> [u8; 6] {
    let i = i as u32;
    let b = i.to_be_bytes();
    [MAC_PREFIX[0], MAC_PREFIX[1], b[0], b[1], b[2], b[3]]
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One node that failed to boot.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub node: String,
    pub mac: String,
    pub reason: String,
}

/// The figures of a storm.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub nodes: usize,
    pub spread_secs: f64,
    pub up: usize,
    pub failed: usize,
    /// From the start until the last node that came up was up.
    pub all_up_secs: f64,
    /// From the start until every node had come up or failed.
    pub elapsed_secs: f64,
    /// CPU seconds the storm itself used (the nodes' receiving and checksumming).
    pub sim_cpu_secs: f64,
    /// Per-node boot time (power-on to up).
    pub p50_secs: f64,
    pub p99_secs: f64,
    pub max_secs: f64,
    /// DHCP requests sent again (no answer in time, or a NAK) beyond each exchange's first.
    pub dhcp_retries: u64,
    pub tftp_bytes: u64,
    pub http_bytes: u64,
    pub bytes: u64,
    /// Image bytes the nodes got from the head and from each other (the swarm).
    pub image_from_head_bytes: u64,
    pub image_from_peers_bytes: u64,
    /// Bytes of the image (the largest the nodes booted).
    pub image_bytes: u64,
    /// Nodes that got their image through the swarm (`_image_peers`).
    pub swarm_nodes: usize,
    /// Piece requests that failed (and went elsewhere).
    pub piece_failures: u64,
    /// Piece requests a peer answered "not arrived yet" (waited for, not failed).
    pub piece_waits: u64,
    /// A few of the failed piece requests' reasons.
    pub piece_failure_examples: Vec<String>,
    pub failures: Vec<Failure>,
}

/// What one node's boot counted.
#[derive(Default)]
struct Counts {
    retries: u64,
    tftp: u64,
    http: u64,
    image_head: u64,
    image_peers: u64,
    image_size: u64,
    swarm: bool,
    piece_failures: u64,
    piece_waits: u64,
    piece_failure_examples: Vec<String>,
}

/// One node's end: its index, its boot time in seconds or why it failed, its counts.
type Booted = (usize, Result<f64, String>, Counts);

/// Shared by the storm's workers.
struct Ctx {
    opts: StormOptions,
    dhcp: dhcp::Client,
    /// Addresses added to the interface (removed at the end).
    added: Mutex<Vec<String>>,
    http: ureq::Agent,
    stats: super::Stats,
    /// The pieces of the images the nodes fetch through the swarm.
    pieces: swarm::Pieces,
    /// Nodes that are up and when their next report is due: they keep reporting until the
    /// storm ends, so the head sees them up.
    up: Mutex<Vec<(Instant, super::SimNode)>>,
}

/// The storm's nodes as (uid, name): the first `n` MACs, created when missing.
fn ensure_nodes(
    c: &Client,
    n: usize,
    boot_config: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let list: Vec<Value> = c.get("/node?fields=uid,name,mac,ip,type")?;
    let by_mac: HashMap<String, &Value> = list
        .iter()
        .filter_map(|o| Some((o.get("mac")?.as_str()?.to_ascii_lowercase(), o)))
        .collect();
    let missing: Vec<String> = (0..n)
        .map(|i| mac_str(mac_of(i)))
        .filter(|m| !by_mac.contains_key(m))
        .collect();
    let mut made: HashMap<String, Value> = HashMap::new();
    if !missing.is_empty() {
        let Some(bc) = boot_config else {
            anyhow::bail!(
                "{} of the {n} storm nodes do not exist (MACs 02:53:…): give --boot-config NAME to create them",
                missing.len()
            );
        };
        eprintln!(
            "storm: creating {} nodes with _boot_config={bc}",
            missing.len()
        );
        let docs: Vec<Value> = missing
            .iter()
            .map(|m| serde_json::json!({"mac": m, "attributes": {"_boot_config": bc}}))
            .collect();
        for chunk in docs.chunks(10_000) {
            let got: Vec<Value> = c.send("POST", "/node?fields=uid,name,mac,ip,type", chunk)?;
            for o in got {
                if let Some(m) = o.get("mac").and_then(Value::as_str) {
                    made.insert(m.to_ascii_lowercase(), o);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mac = mac_str(mac_of(i));
        let Some(o) = by_mac.get(&mac).copied().or_else(|| made.get(&mac)) else {
            anyhow::bail!("the head did not create node {mac}");
        };
        let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if s("type") == "simulated" {
            anyhow::bail!(
                "node {} ({mac}) is a simulated node: a boot storm boots normal nodes (delete it or give it another MAC)",
                s("name")
            );
        }
        if s("ip").is_empty() {
            anyhow::bail!(
                "node {} ({mac}) has no address: the head's DHCP answers only nodes with one (create a net covering the storm's network first: wulf net create …)",
                s("name")
            );
        }
        out.push((s("uid"), s("name")));
    }
    Ok(out)
}

/// `ip addr add IP/BITS dev IFACE` (an address already there is fine).
fn add_addr(ctx: &Ctx, ip: Ipv4Addr, bits: u8) -> anyhow::Result<()> {
    let cidr = format!("{ip}/{bits}");
    {
        let added = ctx.added.lock().unwrap_or_else(|e| e.into_inner());
        if added.contains(&cidr) {
            return Ok(());
        }
    }
    let out = std::process::Command::new("ip")
        .args(["addr", "add", &cidr, "dev", &ctx.opts.iface])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run ip (iproute2): {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("File exists") {
        anyhow::bail!("ip addr add {cidr} dev {}: {}", ctx.opts.iface, err.trim());
    }
    ctx.added
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(cidr);
    Ok(())
}

/// The URL after `kernel` or `initrd` (and their `--name X`) on a script line.
fn line_url(script: &str, cmd: &str) -> Option<String> {
    script.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == cmd).then_some(())?;
        w.find(|t| t.starts_with("http://") || t.starts_with("https://"))
            .map(str::to_string)
    })
}

/// The SHA-256 a `/boot/file/SHA` URL names.
fn url_sha(url: &str) -> Option<&str> {
    let last = url.rsplit('/').next()?;
    (last.len() == 64 && last.bytes().all(|b| b.is_ascii_hexdigit())).then_some(last)
}

/// Boot one node: Ok (the node, to keep reporting) once the head took its first status
/// report.
fn boot_one(
    ctx: &Ctx,
    uid: &str,
    name: &str,
    mac: [u8; 6],
    deadline: Instant,
    n: &mut Counts,
) -> anyhow::Result<super::SimNode> {
    let macs = mac_str(mac);
    let tls = ctx.opts.tls.as_ref();
    // 1. PXE firmware: DHCP names the loader on TFTP.
    let pxe = ctx
        .dhcp
        .lease(mac, Firmware::Pxe, deadline, &mut n.retries)
        .map_err(|e| anyhow::anyhow!("PXE DHCP: {e}"))?;
    if pxe.boot_file.is_empty() || pxe.boot_file.contains("://") {
        anyhow::bail!(
            "PXE DHCP: the answer names no TFTP loader (boot file {:?})",
            pxe.boot_file
        );
    }
    add_addr(ctx, pxe.ip, pxe.mask_bits)?;
    let loader = fetch::tftp(pxe.ip, pxe.next_server, &pxe.boot_file, deadline)?;
    n.tftp += loader.bytes;
    // 2. iPXE (the loader): DHCP names the boot script.
    let ipxe = ctx
        .dhcp
        .lease(mac, Firmware::Ipxe, deadline, &mut n.retries)
        .map_err(|e| anyhow::anyhow!("iPXE DHCP: {e}"))?;
    if !ipxe.boot_file.starts_with("http") {
        anyhow::bail!(
            "iPXE DHCP: the answer names no boot script URL (boot file {:?})",
            ipxe.boot_file
        );
    }
    let ip = ipxe.ip;
    add_addr(ctx, ip, ipxe.mask_bits)?;
    let got = fetch::http(ip, "GET", &ipxe.boot_file, &[], None, tls, true, deadline)?;
    n.http += got.bytes;
    if got.status != 200 {
        anyhow::bail!("GET {}: HTTP {}", ipxe.boot_file, got.status);
    }
    let script = String::from_utf8_lossy(&got.body).to_string();
    let p = super::script_params(&script);
    let (Some(node), Some(token)) = (p.get("node"), p.get("enroll")) else {
        let why: Vec<&str> = script
            .lines()
            .filter_map(|l| l.strip_prefix("echo "))
            .collect();
        anyhow::bail!("the boot script boots nothing: {}", why.join("; "));
    };
    if node != uid {
        anyhow::bail!("the head booted {macs} as node {node}, not {uid}");
    }
    let head = p
        .get("head")
        .ok_or_else(|| anyhow::anyhow!("the boot script has no wulf.head"))?;
    // 3. Kernel and initramfs (iPXE), then the image (wulf-init), each checked.
    let mut files = Vec::new();
    for what in ["kernel", "initrd"] {
        let url = line_url(&script, what)
            .ok_or_else(|| anyhow::anyhow!("the boot script has no {what} URL"))?;
        let sha = url_sha(&url)
            .ok_or_else(|| anyhow::anyhow!("{what} URL {url} names no SHA-256"))?
            .to_ascii_lowercase();
        files.push((what, url, sha, None));
    }
    let (Some(image), Some(image_sha)) = (p.get("image"), p.get("image_sha256")) else {
        anyhow::bail!("the boot script has no wulf.image (the boot config names no image)");
    };
    let auth = format!("Bearer enroll:{uid}:{token}");
    let image_sha = image_sha.to_ascii_lowercase();
    match p.get("swarm") {
        // wulf.swarm=PORT: the image through the swarm, as wulf-agent fetch-image does.
        Some(port) => {
            let port: u16 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("wulf.swarm={port} is not a port"))?;
            let t = swarm::fetch(&ctx.pieces, ip, image, &image_sha, &auth, port, deadline)?;
            n.swarm = true;
            n.image_head += t.from_head;
            n.image_peers += t.from_peers;
            n.image_size = t.from_head + t.from_peers;
            n.http += t.from_head + t.from_peers;
            n.piece_failures += t.failures.len() as u64;
            n.piece_waits += t.waits;
            n.piece_failure_examples = t.failures.into_iter().take(2).collect();
        }
        None => files.push(("image", image.clone(), image_sha, Some(auth))),
    }
    for (what, url, sha, auth) in files {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let got = fetch::http(ip, "GET", &url, &headers, None, tls, false, deadline)?;
        n.http += got.bytes;
        if got.status != 200 {
            anyhow::bail!("{what} {url}: HTTP {}", got.status);
        }
        if got.sha256 != sha {
            anyhow::bail!(
                "{what} checksum mismatch: expected {sha}, got {} ({} bytes from {url})",
                got.sha256,
                got.bytes
            );
        }
        if what == "image" {
            n.image_head += got.bytes;
            n.image_size = got.bytes;
        }
    }
    // 4. The agent: enroll from the node's address, then report (the simulator's code).
    let req = serde_json::to_vec(&wulf_api::enroll::EnrollRequest {
        node: node.clone(),
        token: token.clone(),
    })?;
    let url = format!("{head}/api/v1{}", wulf_api::enroll::PATH);
    let got = fetch::http(
        ip,
        "POST",
        &url,
        &[("Content-Type", "application/json")],
        Some(&req),
        tls,
        true,
        deadline,
    )?;
    if got.status != 200 {
        anyhow::bail!(
            "enrollment refused: HTTP {}: {}",
            got.status,
            String::from_utf8_lossy(&got.body).trim()
        );
    }
    let reply: wulf_api::enroll::EnrollReply = serde_json::from_slice(&got.body)
        .map_err(|e| anyhow::anyhow!("enrollment: a bad answer: {e}"))?;
    let mut sim = super::SimNode::new(
        uid.to_string(),
        name.to_string(),
        macs,
        &reply.credential,
        head.clone(),
    );
    sim.ip = Some(ip.to_string());
    // Reports go from the storm's own address (the head does not bind them to one); like
    // the agent, a node whose report was not taken sends it again.
    let mut heads = super::Heads::new(vec![head.clone()]);
    loop {
        match super::send(
            &ctx.http,
            &mut heads,
            &mut sim,
            ReportState::Up,
            &mut rand::thread_rng(),
            &ctx.stats,
            &mut BTreeMap::new(),
        ) {
            Ok(()) => return Ok(sim),
            Err(e) if Instant::now() + Duration::from_secs(1) >= deadline => {
                anyhow::bail!("status report: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Send the reports of the nodes that are up as they fall due, until `done`.
fn keep_reporting(ctx: &Ctx, done: &std::sync::atomic::AtomicBool) {
    let mut heads: HashMap<String, super::Heads> = HashMap::new();
    let mut rng = rand::thread_rng();
    while !done.load(Ordering::Relaxed) {
        let mut list = std::mem::take(&mut *ctx.up.lock().unwrap_or_else(|e| e.into_inner()));
        for (due, n) in list.iter_mut() {
            if *due > Instant::now() {
                continue;
            }
            let h = heads
                .entry(n.head.clone())
                .or_insert_with(|| super::Heads::new(vec![n.head.clone()]));
            let _ = super::send(
                &ctx.http,
                h,
                n,
                ReportState::Up,
                &mut rng,
                &ctx.stats,
                &mut BTreeMap::new(),
            );
            *due = Instant::now() + Duration::from_secs(u64::from(n.interval.max(1)));
        }
        ctx.up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(list);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CPU seconds (user + system) this process used so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to an rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Take the addresses the storm added off the interface again.
fn remove_addrs(ctx: &Ctx) {
    for cidr in ctx
        .added
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .rev()
    {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", cidr, "dev", &ctx.opts.iface])
            .output();
    }
}

/// Run a boot storm. The figures come back whether or not every node came up; `stop` (a
/// signal) ends it at once, without figures (exit 130), once the addresses are removed.
pub fn run(
    c: &Client,
    opts: StormOptions,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Outcome> {
    if opts.nodes == 0 {
        anyhow::bail!("--boot-storm must be at least 1");
    }
    if !(opts.spread >= 0.0 && opts.spread.is_finite()) {
        anyhow::bail!("--spread must be 0 or more seconds");
    }
    if !(opts.node_timeout > 0.0 && opts.node_timeout.is_finite()) {
        anyhow::bail!("--node-timeout must be more than 0 seconds");
    }
    let nodes = ensure_nodes(c, opts.nodes, opts.boot_config.as_deref())?;
    // Each node's sockets and its listener for peers, and some for the rest.
    super::commands::raise_fd_limit(opts.nodes as u64 * 2 + 256);
    let ctx = Arc::new(Ctx {
        dhcp: dhcp::Client::bind(&opts.iface)?,
        added: Mutex::new(Vec::new()),
        http: super::agent(
            ureq::AgentBuilder::new()
                .timeout_connect(super::CONNECT_TIMEOUT)
                .timeout(Duration::from_secs(30)),
            &opts.tls,
        ),
        stats: super::Stats::default(),
        pieces: swarm::Pieces::default(),
        up: Mutex::new(Vec::new()),
        opts: opts.clone(),
    });
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeper = {
        let (ctx, done) = (ctx.clone(), done.clone());
        std::thread::Builder::new()
            .name("storm-reports".into())
            .spawn(move || keep_reporting(&ctx, &done))?
    };
    {
        let (ctx, done) = (ctx.clone(), done.clone());
        std::thread::Builder::new()
            .name("storm-stop".into())
            .spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if stop.load(Ordering::Relaxed) {
                        remove_addrs(&ctx);
                        eprintln!("storm: stopped by a signal, before every node was done");
                        std::process::exit(130);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })?;
    }
    let cpu0 = cpu_secs();
    // Power-on moments, earliest first.
    let mut due: Vec<(f64, usize)> = (0..opts.nodes)
        .map(|i| {
            let d = if opts.spread > 0.0 {
                rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..opts.spread)
            } else {
                0.0
            };
            (d, i)
        })
        .collect();
    due.sort_by(|a, b| a.0.total_cmp(&b.0));
    let queue = Arc::new(Mutex::new(due.into_iter().collect::<VecDeque<_>>()));
    let nodes = Arc::new(nodes);
    let results: Arc<Mutex<Vec<Booted>>> = Arc::default();
    let last_up = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    eprintln!(
        "storm: {} nodes power on within {:.1} s on {}",
        opts.nodes, opts.spread, opts.iface
    );
    let workers = opts.concurrency.clamp(1, opts.nodes);
    let mut handles = Vec::new();
    for w in 0..workers {
        let (ctx, queue, nodes, results, last_up) = (
            ctx.clone(),
            queue.clone(),
            nodes.clone(),
            results.clone(),
            last_up.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("storm-{w}"))
            .stack_size(256 * 1024)
            .spawn(move || loop {
                let Some((at, i)) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                else {
                    return;
                };
                let power_on = start + Duration::from_secs_f64(at);
                if let Some(d) = power_on.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                let deadline = power_on + Duration::from_secs_f64(ctx.opts.node_timeout);
                let (uid, name) = &nodes[i];
                let mut counts = Counts::default();
                let r = boot_one(&ctx, uid, name, mac_of(i), deadline, &mut counts);
                let r = match r {
                    Ok(_) if Instant::now() > deadline => Err(format!(
                        "up only after the time limit of {} s",
                        ctx.opts.node_timeout
                    )),
                    Ok(sim) => {
                        let due =
                            Instant::now() + Duration::from_secs(u64::from(sim.interval.max(1)));
                        ctx.up
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((due, sim));
                        last_up.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                        Ok(power_on.elapsed().as_secs_f64())
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r, counts));
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) if handles.is_empty() => anyhow::bail!("cannot start a storm thread: {e}"),
            // Fewer threads than asked: the others share the nodes.
            Err(_) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sim_cpu = cpu_secs() - cpu0;
    done.store(true, Ordering::Relaxed);
    let _ = keeper.join();
    remove_addrs(&ctx);
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    results.sort_by_key(|r| r.0);
    let mut times = Vec::new();
    let mut failures = Vec::new();
    let (mut retries, mut tftp, mut http) = (0, 0, 0);
    let (mut image_head, mut image_peers, mut image_bytes, mut swarm_nodes, mut piece_failures) =
        (0, 0, 0, 0, 0);
    let (mut piece_waits, mut piece_failure_examples) = (0, Vec::new());
    for (i, r, k) in results {
        retries += k.retries;
        tftp += k.tftp;
        http += k.http;
        image_head += k.image_head;
        image_peers += k.image_peers;
        image_bytes = image_bytes.max(k.image_size);
        swarm_nodes += usize::from(k.swarm);
        piece_failures += k.piece_failures;
        piece_waits += k.piece_waits;
        for e in k.piece_failure_examples {
            if piece_failure_examples.len() < 10 {
                piece_failure_examples.push(e);
            }
        }
        match r {
            // percentiles() takes µs and gives ms: fed ms, it gives seconds.
            Ok(secs) => times.push((secs * 1000.0).round().min(u32::MAX as f64) as u32),
            Err(reason) => failures.push(Failure {
                node: nodes[i].1.clone(),
                mac: mac_str(mac_of(i)),
                reason,
            }),
        }
    }
    let up = times.len();
    let (p50, p99, max) = super::percentiles(times);
    Ok(Outcome {
        elapsed_secs: elapsed,
        sim_cpu_secs: sim_cpu,
        nodes: opts.nodes,
        spread_secs: opts.spread,
        up,
        failed: opts.nodes - up,
        all_up_secs: last_up.load(Ordering::Relaxed) as f64 / 1e6,
        p50_secs: p50,
        p99_secs: p99,
        max_secs: max,
        dhcp_retries: retries,
        tftp_bytes: tftp,
        http_bytes: http,
        bytes: tftp + http,
        image_from_head_bytes: image_head,
        image_from_peers_bytes: image_peers,
        image_bytes,
        swarm_nodes,
        piece_failures,
        piece_waits,
        piece_failure_examples,
        failures,
    })
}

/// The figures for people.
pub fn print(o: &Outcome) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "boot storm: {} nodes powered on within {:.1} s",
        o.nodes, o.spread_secs
    );
    println!("  up: {} of {}; failed boots: {}", o.up, o.nodes, o.failed);
    println!(
        "  time to all up: {:.2} s{}",
        o.all_up_secs,
        if o.failed > 0 {
            " (of the nodes that came up)"
        } else {
            ""
        }
    );
    println!(
        "  per-node boot time (power-on to up): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        o.p50_secs, o.p99_secs, o.max_secs
    );
    println!(
        "  DHCP retries beyond the first exchange: {}",
        o.dhcp_retries
    );
    println!(
        "  downloaded: {:.1} MiB ({} bytes: TFTP {:.1} MiB, HTTP {:.1} MiB)",
        mib(o.bytes),
        o.bytes,
        mib(o.tftp_bytes),
        mib(o.http_bytes)
    );
    let copies = |b: u64| {
        if o.image_bytes > 0 {
            b as f64 / o.image_bytes as f64
        } else {
            0.0
        }
    };
    println!(
        "  image: {:.1} MiB from the head ({:.1} copies of the {:.1} MiB image), {:.1} MiB from peers ({} of {} nodes used peers; {} piece requests failed)",
        mib(o.image_from_head_bytes),
        copies(o.image_from_head_bytes),
        mib(o.image_bytes),
        mib(o.image_from_peers_bytes),
        o.swarm_nodes,
        o.nodes,
        o.piece_failures
    );
    if o.piece_waits > 0 {
        println!(
            "  piece requests a peer had to wait for (it was behind its own source): {}",
            o.piece_waits
        );
    }
    for e in &o.piece_failure_examples {
        println!("  failed piece request: {e}");
    }
    println!(
        "  the storm's own CPU: {:.1} s over {:.1} s",
        o.sim_cpu_secs, o.elapsed_secs
    );
    for f in &o.failures {
        println!("  failed: {} ({}): {}", f.node, f.mac, f.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_urls_and_shas() {
        let s = "#!ipxe\nkernel --name vmlinuz http://h:1/boot/file/aa initrd=initramfs wulf.x=1\ninitrd --name initramfs http://h:1/boot/file/bb\nboot\n";
        assert_eq!(line_url(s, "kernel").unwrap(), "http://h:1/boot/file/aa");
        assert_eq!(line_url(s, "initrd").unwrap(), "http://h:1/boot/file/bb");
        assert!(line_url(s, "chain").is_none());
        let sha = "ab".repeat(32);
        assert_eq!(
            url_sha(&format!("http://h/boot/file/{sha}")),
            Some(&sha[..])
        );
        assert_eq!(url_sha("http://h/boot/file/xyz"), None);
        assert_eq!(mac_str(mac_of(0x0102)), "02:53:00:00:01:02");
    }
}

//! Prometheus metrics: `GET /metrics` in the Prometheus text format (version 0.0.4) on every
//! head's API port. See docs/admin/monitoring.md for every metric.
//!
//! Two parts:
//! - the head's own counters ([`Metrics`], one per process, reached through [`get`]): HTTP
//!   requests per route, DHCP, TFTP, DNS, boot files, status reports, store latency. Every
//!   series is made once at start and kept as an atomic, so a hot path (20,000 DHCP
//!   exchanges a second) pays one relaxed atomic addition per count: no lock, no label
//!   lookup, no allocation;
//! - what is computed at scrape time ([`nodes`], [`store`]): the cluster's nodes as this head
//!   sees them (from `status/`, nothing done per node between scrapes), the store's size and
//!   health, process figures.
//!
//! The registry and the text encoding are prometheus-client's (the Prometheus project's Rust
//! client); the latency histogram is ours ([`histogram`]) because that crate's takes a lock
//! per observation.

pub mod histogram;
pub mod http;
pub mod nodes;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::app::{App, AppState};
use crate::web::ApiErr;

pub use histogram::Histogram;

/// `[metrics]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics` (over HTTPS) to anyone, without a token.
    #[serde(default)]
    pub public: bool,
    /// A file holding a scrape token: a fixed secret good for `/metrics` only (for
    /// Prometheus, whose `credentials_file` it can be). Read at every scrape.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
}

/// One label, as the head's fixed series carry them.
type L1 = [(&'static str, &'static str); 1];

/// DHCP message types, in option 53's order (1..=8), then anything else.
pub const DHCP_TYPES: [&str; 9] = [
    "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM", "OTHER",
];

/// How a TFTP transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TftpEnd {
    /// Every block sent and acknowledged.
    Complete,
    /// The client ended it after the option acknowledgement (PXE ROMs asking the size).
    OptionsOnly,
    /// The client gave up, stopped answering, or the network failed.
    Failed,
    /// Cancelled (shutdown, or the client started over).
    Cancelled,
    NotFound,
    Denied,
    /// The file could not be opened or read.
    Error,
}

const TFTP_ENDS: [&str; 7] = [
    "complete",
    "options_only",
    "failed",
    "cancelled",
    "not_found",
    "denied",
    "error",
];

/// DNS response codes counted by name; the rest as "other".
const DNS_RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

/// How a boot file went out: the sendfile fast path (plain HTTP) or the router (HTTPS).
#[derive(Debug, Clone, Copy)]
pub enum BootVia {
    Sendfile = 0,
    Router = 1,
}

/// The head's own counters. Made once per process.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    start_unix: f64,
    pub http: http::HttpMetrics,
    dhcp_in: [Counter; 9],
    dhcp_out: [Counter; 3],
    dhcp_malformed: Counter,
    tftp_requests: [Counter; 3],
    tftp_transfers: [Counter; 7],
    tftp_bytes: Counter,
    dns_queries: [Counter; 2],
    dns_answers: [Counter; 7],
    dns_forwarded: Counter,
    boot_files: [Counter; 2],
    boot_bytes: [Counter; 2],
    boots: Counter,
    status_reports: Counter,
    pub store: store::StoreMetrics,
    scrapes: AtomicU64,
}

/// A family with one label, each of `values` made now; the counters are returned in order.
fn counters<const N: usize>(
    reg: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let fam = Family::<L1, Counter>::default();
    let out = values.map(|v| fam.get_or_create(&[(label, v)]).clone());
    reg.register(name, help, fam);
    out
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    reg.register(name, help, c.clone());
    c
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let http = http::HttpMetrics::new(&mut r);
        let dhcp_in = counters(
            &mut r,
            "wulf_dhcp_received",
            "DHCP requests received, by message type",
            "type",
            DHCP_TYPES,
        );
        let dhcp_out = counters(
            &mut r,
            "wulf_dhcp_answers",
            "DHCP answers sent, by message type",
            "type",
            ["OFFER", "ACK", "NAK"],
        );
        let dhcp_malformed = counter(
            &mut r,
            "wulf_dhcp_malformed",
            "DHCP datagrams dropped as malformed or oversized",
        );
        let tftp_requests = counters(
            &mut r,
            "wulf_tftp_requests",
            "TFTP requests received: read requests, refused write requests, bad requests",
            "kind",
            ["read", "write", "bad"],
        );
        let tftp_transfers = counters(
            &mut r,
            "wulf_tftp_transfers",
            "TFTP read requests answered, by how the transfer ended",
            "result",
            TFTP_ENDS,
        );
        let tftp_bytes = counter(
            &mut r,
            "wulf_tftp_sent_bytes",
            "TFTP data bytes sent and acknowledged",
        );
        let dns_queries = counters(
            &mut r,
            "wulf_dns_queries",
            "DNS messages received, by transport",
            "proto",
            ["udp", "tcp"],
        );
        let dns_answers = counters(
            &mut r,
            "wulf_dns_answers",
            "DNS answers sent, by response code",
            "rcode",
            DNS_RCODES,
        );
        let dns_forwarded = counter(
            &mut r,
            "wulf_dns_forwarded",
            "DNS queries for names outside the cluster passed to an upstream server",
        );
        let boot_files = counters(
            &mut r,
            "wulf_boot_files_served",
            "Boot files (kernels, initramfs files, images) answered with their content, by path",
            "via",
            ["sendfile", "router"],
        );
        let boot_bytes = counters(
            &mut r,
            "wulf_boot_file_sent_bytes",
            "Bytes of boot files sent, by path",
            "via",
            ["sendfile", "router"],
        );
        let boots = counter(
            &mut r,
            "wulf_boots",
            "Node boots: boot scripts served that start a node's boot",
        );
        let status_reports = counter(
            &mut r,
            "wulf_status_reports",
            "Status reports taken in from nodes' agents",
        );
        let store = store::StoreMetrics::new(&mut r);
        let start_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Metrics {
            registry: r,
            started: Instant::now(),
            start_unix,
            http,
            dhcp_in,
            dhcp_out,
            dhcp_malformed,
            tftp_requests,
            tftp_transfers,
            tftp_bytes,
            dns_queries,
            dns_answers,
            dns_forwarded,
            boot_files,
            boot_bytes,
            boots,
            status_reports,
            store,
            scrapes: AtomicU64::new(0),
        }
    }

    /// A DHCP request of type `code` (option 53) came in.
    pub fn dhcp_received(&self, code: u8) {
        self.dhcp_in[dhcp_slot(code)].inc();
    }

    /// A DHCP answer of type `code` (2 OFFER, 5 ACK, 6 NAK) goes out.
    pub fn dhcp_answer(&self, code: u8) {
        let i = match code {
            2 => 0,
            6 => 2,
            _ => 1,
        };
        self.dhcp_out[i].inc();
    }

    pub fn dhcp_malformed(&self) {
        self.dhcp_malformed.inc();
    }

    /// A TFTP read request (`Some(true)`), refused write request (`Some(false)`) or bad
    /// request (`None`).
    pub fn tftp_request(&self, read: Option<bool>) {
        let i = match read {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        };
        self.tftp_requests[i].inc();
    }

    pub fn tftp_transfer(&self, end: TftpEnd, bytes: u64) {
        self.tftp_transfers[end as usize].inc();
        if bytes > 0 {
            self.tftp_bytes.inc_by(bytes);
        }
    }

    /// A DNS message arrived (`tcp` or UDP).
    pub fn dns_query(&self, tcp: bool) {
        self.dns_queries[usize::from(tcp)].inc();
    }

    /// A DNS answer goes out: its response code is read from the header.
    pub fn dns_answer(&self, reply: &[u8]) {
        let rcode = reply.get(3).map(|b| b & 0x0f).unwrap_or(255);
        let i = match rcode {
            0..=5 => usize::from(rcode),
            _ => 6,
        };
        self.dns_answers[i].inc();
    }

    pub fn dns_forwarded(&self) {
        self.dns_forwarded.inc();
    }

    /// A boot file's content went out (`bytes` of it).
    pub fn boot_file(&self, via: BootVia, bytes: u64) {
        self.boot_files[via as usize].inc();
        self.boot_bytes[via as usize].inc_by(bytes);
    }

    /// A node's boot began here (its boot script was served).
    pub fn boot(&self) {
        self.boots.inc();
    }

    pub fn status_report(&self) {
        self.status_reports.inc();
    }

    /// The head's own series, as text.
    fn encode_own(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
    }
}

fn dhcp_slot(code: u8) -> usize {
    match code {
        1..=8 => usize::from(code - 1),
        _ => 8,
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The head's counters.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// `GET /metrics`. It checks its caller itself (see [`allowed`]), so it is merged outside
/// the access guard; its row in auth/table.rs says what it needs by default.
pub fn routes() -> Router<Arc<App>> {
    // Start the clock for the uptime and make every series now.
    LazyLock::force(&METRICS);
    Router::new().route("/metrics", axum::routing::get(scrape))
}

/// Whether the request may read the metrics: anyone with `[metrics] public`, the scrape
/// token of `[metrics] token_file`, or an account (role viewer or more) as on every other
/// viewer route; else the refusal, as the access guard would answer it.
async fn allowed(app: &App, headers: &HeaderMap, source: String) -> Result<(), ApiErr> {
    let m = &app.cfg.metrics;
    if m.public {
        return Ok(());
    }
    let presented = crate::web::bearer(headers);
    if let (Some(path), Some(p)) = (&m.token_file, presented) {
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => {
                use subtle::ConstantTimeEq;
                let t = t.trim().as_bytes();
                if t.len() == p.len() && bool::from(t.ct_eq(p.as_bytes())) {
                    return Ok(());
                }
            }
            Ok(_) => tracing::warn!(path = %path.display(), "[metrics] token_file is empty"),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read [metrics] token_file: {e}")
            }
        }
    }
    let p = crate::auth::authenticate(app, headers, source).await?;
    if p.role < wulf_api::auth::Role::Viewer {
        return Err(ApiErr::new(StatusCode::FORBIDDEN, "/metrics needs viewer"));
    }
    Ok(())
}

async fn scrape(State(app): AppState, req: Request) -> Response {
    let source = crate::web::source(req.extensions());
    if let Err(e) = allowed(&app, req.headers(), source).await {
        return e.into_response();
    }
    match render(&app).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiErr::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
        .into_response(),
    }
}

/// Everything `/metrics` answers, as text.
pub async fn render(app: &App) -> Result<String, std::fmt::Error> {
    let m = get();
    m.scrapes.fetch_add(1, Relaxed);
    let store_status = store::status(app).await;
    let t = Instant::now();
    let snapshot = nodes::Snapshot::take(app);
    let mut out = String::with_capacity(256 * snapshot.len() + 64 * 1024);
    m.encode_own(&mut out)?;
    let mut r = Registry::default();
    r.register_collector(Box::new(Process {
        head: app.head.clone(),
        uptime: m.started.elapsed().as_secs_f64(),
        start: m.start_unix,
        scrapes: m.scrapes.load(Relaxed),
    }));
    r.register_collector(Box::new(store_status));
    r.register_collector(Box::new(snapshot));
    prometheus_client::encoding::prometheus_text::encode(&mut out, &r)?;
    tracing::debug!(
        bytes = out.len(),
        ms = t.elapsed().as_millis() as u64,
        "metrics encoded"
    );
    Ok(out)
}

/// Process figures, read at scrape time.
#[derive(Debug)]
struct Process {
    head: String,
    uptime: f64,
    start: f64,
    scrapes: u64,
}

/// Resident memory (bytes), CPU time (seconds) and open descriptors of this process.
fn proc_self() -> (Option<u64>, Option<f64>, Option<u64>) {
    // SAFETY: sysconf has no preconditions.
    let (page, tick) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page.max(1) as u64);
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / tick.max(1) as f64)
        });
    let fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    (rss, cpu, fds)
}

/// Encode one unlabelled gauge.
pub(crate) fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut prometheus_client::encoding::DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> std::fmt::Result {
    use prometheus_client::metrics::MetricType;
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// Encode one gauge family: (labels, value) pairs.
pub(crate) fn gauges<S, V, I>(
    e: &mut prometheus_client::encoding::DescriptorEncoder,
    name: &str,
    help: &str,
    series: I,
) -> std::fmt::Result
where
    S: EncodeLabelSet,
    V: prometheus_client::encoding::EncodeGaugeValue,
    I: IntoIterator<Item = (S, V)>,
{
    use prometheus_client::metrics::MetricType;
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Process {
    fn encode(
        &self,
        mut e: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        e.encode_descriptor(
            "wulf_build",
            "The head's version and name (always 1)",
            None,
            MetricType::Info,
        )?
        .encode_info(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("head", self.head.as_str()),
        ])?;
        gauge(
            &mut e,
            "wulf_head_uptime_seconds",
            "Seconds since this wulfd started",
            self.uptime,
        )?;
        gauge(
            &mut e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            self.start,
        )?;
        let (rss, cpu, fds) = proc_self();
        if let Some(v) = rss {
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                v,
            )?;
        }
        if let Some(v) = cpu {
            e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&v, None)?;
        }
        if let Some(v) = fds {
            gauge(&mut e, "process_open_fds", "Open file descriptors", v)?;
        }
        e.encode_descriptor(
            "wulf_metrics_scrapes",
            "Scrapes of /metrics answered by this head",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&self.scrapes, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_text() -> String {
        let mut s = String::new();
        get().encode_own(&mut s).unwrap();
        s
    }

    /// The value of the series `line_start` (name and labels, as written) in `text`.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn counters_show_in_the_text_format() {
        let m = get();
        let before = own_text();
        let offer = value(&before, "wulf_dhcp_answers_total{type=\"OFFER\"}");
        m.dhcp_received(1);
        m.dhcp_answer(2);
        m.dhcp_answer(2);
        m.dhcp_received(200);
        m.tftp_request(Some(true));
        m.tftp_transfer(TftpEnd::Complete, 1000);
        m.dns_query(false);
        m.dns_answer(&[0, 0, 0x81, 0x83]);
        m.boot_file(BootVia::Sendfile, 4096);
        m.boot();
        m.status_report();
        let t = own_text();
        assert_eq!(
            value(&t, "wulf_dhcp_answers_total{type=\"OFFER\"}"),
            offer + 2.0
        );
        assert!(value(&t, "wulf_dhcp_received_total{type=\"DISCOVER\"}") >= 1.0);
        assert!(value(&t, "wulf_dhcp_received_total{type=\"OTHER\"}") >= 1.0);
        assert!(value(&t, "wulf_tftp_transfers_total{result=\"complete\"}") >= 1.0);
        assert!(value(&t, "wulf_tftp_sent_bytes_total") >= 1000.0);
        assert!(value(&t, "wulf_dns_answers_total{rcode=\"NXDOMAIN\"}") >= 1.0);
        assert!(value(&t, "wulf_boot_file_sent_bytes_total{via=\"sendfile\"}") >= 4096.0);
        assert!(value(&t, "wulf_boots_total") >= 1.0);
        assert!(value(&t, "wulf_status_reports_total") >= 1.0);
        // Every family says what it is.
        for fam in [
            "wulf_dhcp_received_total",
            "wulf_http_requests_total",
            "wulf_http_request_duration_seconds",
            "wulf_store_operation_duration_seconds",
        ] {
            assert!(t.contains(&format!("# HELP {fam} ")), "{fam}:\n{t}");
            assert!(t.contains(&format!("# TYPE {fam} ")), "{fam}:\n{t}");
        }
        // Series exist before their first count (a rate over them starts at 0).
        assert!(t.contains("wulf_dhcp_answers_total{type=\"NAK\"} "), "{t}");
        assert!(
            !t.contains("wulf_dhcp_answers_total{type=\"DISCOVER\"}"),
            "{t}"
        );
    }

    #[test]
    fn every_sample_line_parses() {
        let t = own_text();
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (series, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            assert!(v.parse::<f64>().is_ok() || v == "+Inf", "bad value in {l}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad name in {l}"
            );
        }
    }

    #[test]
    fn proc_figures_read() {
        let (rss, cpu, fds) = proc_self();
        assert!(rss.unwrap() > 0);
        assert!(cpu.unwrap() >= 0.0);
        assert!(fds.unwrap() > 0);
    }
}

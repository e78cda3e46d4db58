//! `/metrics` scraped by a real Prometheus server (Debian's `prometheus`, installed by
//! test.d/prometheus.sh): a head with 16 simulated nodes reporting, Prometheus scraping it over
//! HTTPS every second with the cluster CA and a viewer's token, and its query API asked what
//! it stored. Every query of the Grafana dashboard (docs/grafana/wulf-cluster.json) is sent
//! to the same Prometheus, which must accept it. Who may scrape is checked with curl; the
//! scrape of 10,000 nodes is timed.

mod head;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use head::{free_port, wait_every, write, Head};
use serde_json::{json, Value};

/// A Prometheus server of the test's own: its config, port and storage directory; killed
/// when dropped.
struct Prometheus {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Start Prometheus scraping `target` (host:port) over HTTPS every second, checking the
    /// head against `ca` and sending the token in `token_file`.
    fn start(dir: &Path, target: &str, ca: &Path, token_file: &Path) -> Prometheus {
        let port = free_port();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: wulf\n    scheme: https\n    metrics_path: /metrics\n\
             \x20   tls_config:\n      ca_file: {}\n    authorization:\n      credentials_file: {}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n",
            ca.display(),
            token_file.display()
        );
        let cfg = write(dir, "prometheus.yml", config.as_bytes());
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&cfg)
            .output()
            .expect("promtool must be installed (./test.sh installs prometheus)");
        assert!(
            check.status.success(),
            "promtool check config:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus must be installed (./test.sh installs it)");
        let p = Prometheus {
            child: Some(child),
            port,
            log,
        };
        wait_every(
            "Prometheus did not become ready",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                Command::new("curl")
                    .args(["-sf", &format!("http://127.0.0.1:{port}/-/ready")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
            || p.log(),
        );
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/v1/query?query=Q` (the answer's JSON, whatever its status).
    fn query(&self, q: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--get", "--data-urlencode"])
            .arg(format!("query={q}"))
            .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "query {q}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// The single value `q` gives now, if it gives one.
    fn value(&self, q: &str) -> Option<f64> {
        let v = self.query(q);
        assert_eq!(v["status"], "success", "query {q}: {v}");
        let r = v["data"]["result"].as_array()?;
        if r.len() != 1 {
            return None;
        }
        r[0]["value"][1].as_str()?.parse().ok()
    }

    /// Wait (bounded) until `q` gives a value for which `ok` holds; returns it.
    fn wait_value(&self, q: &str, secs: u64, ok: impl Fn(f64) -> bool) -> f64 {
        let last = std::cell::Cell::new(None);
        wait_every(
            &format!("Prometheus never answered {q} as wanted"),
            Duration::from_secs(secs),
            Duration::from_millis(500),
            || {
                last.set(self.value(q));
                last.get().is_some_and(&ok)
            },
            || {
                format!(
                    "last: {:?}\ntargets: {}\nprometheus log:\n{}",
                    last.get(),
                    self.targets(),
                    self.log()
                )
            },
        );
        last.get().unwrap_or_default()
    }

    fn targets(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}/api/v1/targets", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll `wulf node status` until its summary has the line `want` (bounded).
fn wait_summary(h: &Head, secs: u64, want: &str) {
    let last = std::cell::RefCell::new(String::new());
    wait_every(
        &format!("status never showed '{want}'"),
        Duration::from_secs(secs),
        Duration::from_millis(500),
        || {
            let out = h.ok(&["node", "status"]);
            let found = out
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == want);
            *last.borrow_mut() = out;
            found
        },
        || format!("last:\n{}\nhead log:\n{}", last.borrow(), h.log()),
    );
}

/// An account with role `role`, logged in: its access token.
fn account_token(h: &Head, name: &str, role: &str) -> String {
    let body = json!({"name": name, "role": role, "password": format!("{name}-password")});
    let (code, out) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &h.auth(),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body.to_string(),
        &format!("{}/api/v1/admin", h.url()),
    ]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
    let login = json!({"name": name, "password": format!("{name}-password")});
    let (code, out) = h.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        &login.to_string(),
        &format!("{}/api/v1/login", h.url()),
    ]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let v: Value = serde_json::from_slice(&out).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// `GET /metrics` with curl (the cluster CA checked) and this bearer token, if any.
fn scrape(h: &Head, token: Option<&str>) -> (u16, String) {
    let header = token.map(|t| format!("Authorization: Bearer {t}"));
    let url = format!("{}/metrics", h.url());
    let mut args = vec!["--max-time", "20"];
    if let Some(hd) = &header {
        args.extend(["-H", hd.as_str()]);
    }
    args.push(&url);
    let (code, body) = h.curl(&args);
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// Every PromQL query of the dashboard (panels, rows' panels, template variables), with
/// Grafana's variables replaced by values Prometheus takes.
fn dashboard_queries(dash: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().unwrap_or_default();
        // Grafana's label_values(METRIC, LABEL) asks for METRIC's series.
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(m, _)| m.trim().to_string());
        out.push(inner.unwrap_or_else(|| panic!("template query {q}")));
    }
    out.into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$job", ".+")
                .replace("$node", "n0")
        })
        .collect()
}

#[test]
fn prometheus_scrapes_a_head_with_simulated_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let scrape_token = "s3cr3t-scrape-token-0123456789abcdef";
    let token_file = write(
        dir.path(),
        "scrape.token",
        format!("{scrape_token}\n").as_bytes(),
    );
    let h = Head::start_configured(
        None,
        &format!(
            "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n\
             [metrics]\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
        &[],
    );
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    let _s = h.sim(&["--nodes", "16", "--boot-secs", "0.5"]);
    wait_summary(&h, 60, "up 16 n[0-15]");

    // Who may scrape: an account (viewer is enough), the scrape token; nobody else.
    let viewer = account_token(&h, "grafana", "viewer");
    let (code, text) = scrape(&h, Some(&viewer));
    assert_eq!(code, 200, "{text}");
    assert!(
        text.lines().any(|l| l == "wulf_nodes{state=\"up\"} 16"),
        "{text}"
    );
    assert_eq!(scrape(&h, Some(scrape_token)).0, 200);
    let (code, body) = scrape(&h, None);
    assert_eq!(code, 401, "{body}");
    assert_eq!(scrape(&h, Some("wrong-token")).0, 401);
    let (code, body) = scrape(&h, Some("node:0123456789abcdef0123456789abcdef:00"));
    assert_eq!(code, 403, "{body}");
    // Plain HTTP reaches only /boot/.
    let (code, _) = h.curl(&[&format!("{}/metrics", h.http_url())]);
    assert_eq!(code, 403);
    // The content type Prometheus expects of the text format.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{content_type}",
            "--cacert",
        ])
        .arg(h.ca())
        .args(["-H", &format!("Authorization: Bearer {viewer}")])
        .arg(format!("{}/metrics", h.url()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "text/plain; version=0.0.4; charset=utf-8"
    );

    // A boot file through the sendfile fast path (plain HTTP) and through the router (HTTPS).
    let k = write(h.dir.path(), "vmlinuz", &vec![7u8; 100_000]);
    let i = write(h.dir.path(), "initrd", b"an initramfs");
    h.ok(&[
        "boot",
        "create",
        "name=b1",
        &format!("kernel=@{}", k.display()),
        &format!("initramfs=@{}", i.display()),
    ]);
    let ksha = h.json(&["boot", "ls"])[0]["kernel"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    for base in [h.http_url(), h.url()] {
        let (code, body) = h.curl(&[&format!("{base}/boot/file/{ksha}")]);
        assert_eq!((code, body.len()), (200, 100_000), "{base}");
    }
    let (code, _) = h.curl(&[&format!("{}/boot/file/{}", h.http_url(), "0".repeat(64))]);
    assert_eq!(code, 404);

    // Prometheus scrapes with the viewer's token, as its credentials_file.
    let viewer_file = write(dir.path(), "viewer.token", viewer.as_bytes());
    let p = Prometheus::start(
        dir.path(),
        &format!("127.0.0.1:{}", h.port),
        &h.ca(),
        &viewer_file,
    );
    p.wait_value("up{job=\"wulf\"}", 60, |v| v == 1.0);
    assert_eq!(
        p.wait_value("sum(wulf_nodes{state=\"up\"})", 30, |v| v == 16.0),
        16.0
    );
    assert_eq!(p.value("count(wulf_node_state{state=\"up\"})"), Some(16.0));
    assert_eq!(p.value("count(wulf_node_state_code == 2)"), Some(16.0));
    assert_eq!(p.value("count(wulf_node_load1)"), Some(16.0));
    assert!(p.value("min(wulf_node_memory_total_bytes)").unwrap() > 0.0);
    assert!(
        p.value("max(wulf_node_last_report_age_seconds)").unwrap() < 10.0,
        "reports every second"
    );
    assert_eq!(p.value("wulf_nodes{state=\"down\"}"), Some(0.0));
    // The head's own: requests per route (by pattern), status reports, boots, boot files.
    p.wait_value(
        "sum(wulf_http_requests_total{method=\"POST\",route=\"/api/v1/node/status\",code=\"2xx\"})",
        30,
        |v| v > 0.0,
    );
    p.wait_value(
        "sum(wulf_http_requests_total{route=\"/metrics\",code=\"2xx\"})",
        30,
        |v| v > 0.0,
    );
    assert_eq!(
        p.value("count(wulf_http_requests_total{route=~\"/api/v1/node/[0-9a-f]{32}.*\"})"),
        None,
        "no series per raw path"
    );
    assert!(p.value("wulf_status_reports_total").unwrap() >= 16.0);
    assert!(p.value("wulf_boots_total").unwrap() >= 16.0);
    assert_eq!(
        p.value("wulf_boot_files_served_total{via=\"sendfile\"}"),
        Some(1.0)
    );
    assert_eq!(
        p.value("wulf_boot_file_sent_bytes_total{via=\"sendfile\"}"),
        Some(100_000.0)
    );
    assert_eq!(
        p.value("wulf_boot_file_sent_bytes_total{via=\"router\"}"),
        Some(100_000.0)
    );
    assert_eq!(
        p.value(
            "sum(wulf_http_requests_total{method=\"GET\",route=\"/boot/file/{sha256}\",code=\"4xx\"})"
        ),
        Some(1.0),
        "the sendfile path's 404"
    );
    assert!(
        p.value("sum(wulf_http_request_duration_seconds_count{route=\"/api/v1/node/status\"})")
            .unwrap()
            > 0.0
    );
    assert!(
        p.value("sum(wulf_store_operation_duration_seconds_count{op=\"txn\"})")
            .unwrap()
            > 0.0,
        "status flushes are store transactions"
    );
    assert_eq!(p.value("wulf_store_up"), Some(1.0));
    assert!(p.value("wulf_store_db_size_bytes").unwrap() > 0.0);
    assert_eq!(
        p.value("count(wulf_build_info{version=\"0.1.0\"})"),
        Some(1.0)
    );
    assert!(p.value("wulf_head_uptime_seconds").unwrap() > 0.0);
    assert!(p.value("process_resident_memory_bytes").unwrap() > 0.0);

    // The dashboard: importable (uid, title, the datasource input), the panels asked for,
    // and every query one Prometheus takes.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana/wulf-cluster.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "wulf-cluster");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        dash["__inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input"
    );
    let panels = dash["panels"].as_array().unwrap();
    for p in panels {
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        }
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{}", p["title"]);
    }
    for kind in ["stat", "timeseries", "heatmap", "state-timeline"] {
        assert!(panels.iter().any(|p| p["type"] == kind), "no {kind} panel");
    }
    assert!(
        panels
            .iter()
            .any(|p| p["type"] == "row" && p["repeat"] == "node"),
        "no per-node row"
    );
    assert!(dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "node"));
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut answered = 0;
    for q in &queries {
        let v = p.query(q);
        assert_eq!(v["status"], "success", "the dashboard's query {q}: {v}");
        if !v["data"]["result"].as_array().unwrap().is_empty() {
            answered += 1;
        }
    }
    // Most have data already (a few need a second scrape for their rate, or a shared store).
    assert!(
        answered * 3 >= queries.len() * 2,
        "only {answered} of {} queries have data",
        queries.len()
    );
    // The node drill-down.
    let v = p.query("max by (node) (wulf_node_state_code{node=~\"n3\"})");
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
}

/// 10,000 nodes reporting: a scrape answers in well under a second.
#[test]
fn scrape_of_ten_thousand_nodes() {
    let h = Head::start_configured(
        None,
        "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n",
        &[],
    );
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=10"]);
    let _s = h.sim(&[
        "--nodes",
        "10000",
        "--boot-secs",
        "5",
        "--connections",
        "16",
    ]);
    wait_summary(&h, 300, "up 10000 n[0-9999]");
    let token = h.token();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let (code, text) = scrape(&h, Some(&token));
        times.push(t.elapsed());
        assert_eq!(code, 200);
        assert!(
            text.lines().any(|l| l == "wulf_nodes{state=\"up\"} 10000"),
            "{}",
            &text[..text.len().min(2000)]
        );
        assert_eq!(text.matches("\nwulf_node_load1{").count(), 10_000);
        size = text.len();
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "/metrics of 10,000 nodes: {size} bytes; fastest {:?}, median {median:?}, slowest {:?} (curl, TLS included)",
        times[0],
        times[times.len() - 1]
    );
    assert!(
        median < Duration::from_millis(800),
        "a scrape of 10,000 nodes took {median:?}: {times:?}"
    );
}

/// `[metrics] public = true`: anyone may scrape over HTTPS; plain HTTP still may not.
#[test]
fn public_metrics_need_no_token() {
    let h = Head::start_configured(
        None,
        "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n\
         [metrics]\npublic = true\n",
        &[],
    );
    let (code, text) = scrape(&h, None);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\nwulf_nodes{state=\"up\"} 0\n"), "{text}");
    let (code, _) = h.curl(&[&format!("{}/metrics", h.http_url())]);
    assert_eq!(code, 403);
    // A bad config key is refused at start, with the file named.
    let bad = tempfile::tempdir().unwrap();
    let cfg = write(bad.path(), "wulfd.toml", b"[metrics]\npublik = true\n");
    let out = Command::new(head::wulfd_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(bad.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("WULFD_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("publik") && err.contains("wulfd.toml"),
        "{err}"
    );
}

//! The web page at `/` in a real browser: Debian's headless Chromium driven by playwright-core
//! (npm, in /opt/wulf-test/playwright; test.d/browser.sh installs both) against a real head
//! with 16 simulated nodes (`wulf sim`). The browser trusts the cluster CA through an NSS
//! database in its own HOME (certutil), as Chromium on Linux does: no certificate error is
//! ignored. The script (tests/gui/gui.mjs) logs in as an operator, sees 16 nodes up in the
//! summary, filters the table by hostlist, state and group, sorts, opens a node (attributes
//! with their layers, status, hardware), runs a command and a reboot, logs out, and checks
//! that a viewer sees the actions disabled and that the API refuses its power request (403).
//! Then the cluster grows to 10,000 nodes and the table's load, filter, sort and scroll are
//! timed. Screenshots and timings go to target/gui/.

mod head;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use head::{wait_every, wulf_bin, Head};
use serde_json::Value;

const PLAYWRIGHT_DIR: &str = "/opt/wulf-test/playwright";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The cargo target directory (`wulf` is in target/release/).
fn target_dir() -> PathBuf {
    let bin = wulf_bin();
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The browser and playwright-core are installed (by ./test.sh); fail, never skip, if not.
fn check_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: ./test.sh installs it (test.d/browser.sh: apt-get install chromium)"
    );
    let pkg = Path::new(PLAYWRIGHT_DIR).join("node_modules/playwright-core/package.json");
    assert!(
        pkg.exists(),
        "{} is missing: ./test.sh installs it (test.d/browser.sh: npm install --prefix {PLAYWRIGHT_DIR} playwright-core)",
        pkg.display()
    );
    for tool in ["node", "certutil"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{tool} is missing: ./test.sh installs it (test.d/browser.sh)"
        );
    }
}

/// A HOME whose NSS database (~/.pki/nssdb, where Chromium on Linux looks) trusts the
/// cluster CA for TLS servers, and nothing else.
fn browser_home(ca: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let o = Command::new("certutil").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["-d", &db_arg, "-N", "--empty-password"]);
    let ca = ca.display().to_string();
    run(&[
        "-d",
        &db_arg,
        "-A",
        "-t",
        "C,,",
        "-n",
        "wulf cluster CA",
        "-i",
        &ca,
    ]);
    home
}

/// Run gui.mjs in `mode` against the head; returns the JSON it prints.
fn page(h: &Head, mode: &str, home: &Path, out: &Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gui/gui.mjs");
    let profile = tempfile::tempdir().unwrap();
    let t = Instant::now();
    // `timeout` bounds the whole run, browser included.
    let o = Command::new("timeout")
        .args(["-k", "10", "300", "node", script, mode])
        .env("HOME", home)
        .env("WULF_URL", h.url())
        .env("GUI_OUT", out)
        .env("GUI_PROFILE", profile.path())
        .env("GUI_OPERATOR", "op:op-password-1")
        .env("GUI_VIEWER", "ro:viewer-password-1")
        .env("PLAYWRIGHT_DIR", PLAYWRIGHT_DIR)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "gui.mjs {mode} failed ({}, after {:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nwulfd log (tail):\n{}",
        o.status,
        t.elapsed(),
        tail(&h.log(), 40)
    );
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("gui.mjs printed {stdout:?}: {e}"))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// (status, headers, body) of a request with curl, checking the cluster CA.
fn curl_full(h: &Head, args: &[&str]) -> (u16, String, Vec<u8>) {
    let hdr = tempfile::NamedTempFile::new().unwrap();
    let (code, body) = h.curl(&[&["-D", hdr.path().to_str().unwrap()], args].concat());
    let headers = std::fs::read_to_string(hdr.path())
        .unwrap()
        .to_ascii_lowercase();
    (code, headers, body)
}

#[test]
fn web_page_in_a_real_browser() {
    check_browser();
    let h = Head::start();
    let url = h.url();

    // The files, as served: content types, the policy, ETags; plain HTTP refused.
    let (code, hd, body) = curl_full(&h, &[&format!("{url}/")]);
    assert_eq!(code, 200);
    assert!(
        hd.contains("content-type: text/html; charset=utf-8"),
        "{hd}"
    );
    assert!(
        hd.contains("content-security-policy: default-src 'none'; script-src 'self';"),
        "{hd}"
    );
    assert!(hd.contains("frame-ancestors 'none'"), "{hd}");
    assert!(hd.contains("x-frame-options: deny"), "{hd}");
    assert!(hd.contains("x-content-type-options: nosniff"), "{hd}");
    assert!(String::from_utf8_lossy(&body).contains("/ui/app.js"));
    let (code, hd, _) = curl_full(&h, &[&format!("{url}/ui/app.js")]);
    assert_eq!(code, 200);
    assert!(hd.contains("content-type: text/javascript"), "{hd}");
    let etag = hd
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("no etag in {hd}"))
        .trim()
        .to_string();
    let (code, _, body) = curl_full(
        &h,
        &[
            "-H",
            &format!("If-None-Match: {etag}"),
            &format!("{url}/ui/app.js"),
        ],
    );
    assert_eq!(code, 304);
    assert!(body.is_empty());
    let (code, hd, _) = curl_full(&h, &[&format!("{url}/ui/app.css")]);
    assert_eq!(code, 200);
    assert!(hd.contains("content-type: text/css"), "{hd}");
    let (code, _, body) = curl_full(&h, &[&format!("{url}/ui/nosuch.js")]);
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("no such file of the web page"));
    let (code, _) = h.curl(&[&format!("{}/", h.http_url())]);
    assert_eq!(code, 403, "the page over plain HTTP");

    // A network (so nodes have addresses), 16 simulated nodes reporting every 2 s.
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.54.0.10",
        "ip_count=20000",
        "mask_bits=16",
        "first_index=0",
    ]);
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=2"]);
    let _sim = h.sim(&["--nodes", "16", "--boot-secs", "0"]);
    let all_up = |what: &str| {
        wait_every(
            what,
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                h.wulf(&["node", "status"])
                    .stdout
                    .starts_with(b"up  16  n[0-15]")
            },
            || String::from_utf8_lossy(&h.wulf(&["node", "status"]).stdout).into_owned(),
        )
    };
    all_up("16 simulated nodes up");
    // A group with a boot config, an attribute of a node's own.
    let kernel = h.dir.path().join("vmlinuz");
    std::fs::write(&kernel, vec![0u8; 4096]).unwrap();
    h.ok(&[
        "boot",
        "create",
        "name=compute",
        &format!("kernel=@{}", kernel.display()),
    ]);
    h.ok(&["attrib", "create", "name=gpu", "_boot_config=compute"]);
    h.ok(&["node", "-i", "n[12-15]", "join", "gpu"]);
    h.ok(&["node", "-i", "n3", "set", "rack=r1"]);
    // An operator and a viewer.
    for (name, role, pw) in [
        ("op", "operator", "op-password-1"),
        ("ro", "viewer", "viewer-password-1"),
    ] {
        let o = h.wulf_stdin(
            &[
                "admin",
                "create",
                &format!("name={name}"),
                &format!("role={role}"),
                "--password-stdin",
            ],
            Some(&format!("{pw}\n")),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let home = browser_home(&h.ca());
    let out = target_dir().join("gui");
    std::fs::create_dir_all(&out).unwrap();
    let main = page(&h, "main", home.path(), &out);
    println!("main: {main}");
    assert_eq!(main["viewer_power"][0], 403, "{main}");
    assert!(
        main["viewer_power"][1]
            .as_str()
            .is_some_and(|e| e.contains("needs operator")),
        "{main}"
    );
    for png in ["nodes.png", "node.png"] {
        let len = std::fs::metadata(out.join(png))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{png}: {len} bytes");
    }
    // The reboot went through the simulated agent and the node comes back.
    let log = h.log();
    assert!(
        log.contains("account=op"),
        "no audit line of the operator's actions:\n{}",
        tail(&log, 40)
    );
    // The state filter below counts 16 nodes up: n3 booted a second time, and is up.
    let n3_boots = |log: &str| {
        log.lines()
            .filter(|l| l.contains("Booting node") && l.ends_with("node=n3"))
            .count()
    };
    wait_every(
        "n3 booting again after the page's reboot",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || n3_boots(&h.log()) >= 2,
        || tail(&h.log(), 20),
    );
    all_up("n3 up again after the page's reboot");

    // 10,000 nodes: the other 9,984 created in one request.
    let macs: Vec<Value> = (0..9_984u32)
        .map(|i| {
            serde_json::json!({
                "mac": format!("52:54:01:{:02x}:{:02x}:{:02x}", i >> 16, (i >> 8) & 0xff, i & 0xff)
            })
        })
        .collect();
    let file = h.dir.path().join("nodes.json");
    std::fs::write(&file, serde_json::to_vec(&macs).unwrap()).unwrap();
    let (code, body) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &h.auth(),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{url}/api/v1/node?fields=name"),
    ]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let scale = page(&h, "scale", home.path(), &out);
    println!("10,000 nodes: {scale}");
    std::fs::write(
        out.join("timings.json"),
        serde_json::to_string_pretty(&scale).unwrap(),
    )
    .unwrap();
    // Generous bounds (a loaded 2-core CI machine); docs/admin/gui.md has the figures.
    for (k, limit) in [
        ("filter_hostlist_ms", 1000.0),
        ("filter_state_ms", 1000.0),
        ("sort_name_ms", 1500.0),
        ("sort_state_ms", 1500.0),
        ("scroll_end_ms", 1000.0),
        ("load_ms", 20_000.0),
    ] {
        let v = scale[k].as_f64().unwrap_or(f64::MAX);
        assert!(v < limit, "{k} = {v} ms (limit {limit}): {scale}");
    }
    assert!(scale["rendered_rows"].as_u64().unwrap_or(u64::MAX) < 120);
}

/// The page's hostlist code (gui/assets/hostlist.js, run by node) expands and compresses as
/// `wulf hostlist` (crates/model/src/hostlist.rs) does, and refuses what it refuses.
#[test]
fn page_hostlists_agree_with_wulf() {
    check_browser();
    let exprs = [
        "n[0-15]",
        "n[0-3,7]",
        "rack[1-2]n[1-3]",
        "gpu[000-127]",
        "[8-10]",
        "x[098-100]",
        "n[1-2]-ib",
        "a,b,a",
        "n[1-3],n2",
        " n1 , n2 ",
        "n[3-5,4-6]",
        "login1",
        "n1,,n2",
        "n1,",
        "n[5-3]",
        "n[",
        "n]",
        "n[[1]]",
        "n[]",
        "n[a-3]",
        "n[1-]",
    ];
    let names: [&[&str]; 6] = [
        &["n1", "n2", "n3", "n7"],
        &[
            "gpu007", "gpu008", "gpu099", "gpu100", "login", "n01", "n1", "n5",
        ],
        &["n10", "n9", "n11", "x", "n9"],
        &["rack1n1", "rack1n2", "rack2n1"],
        &["a1b", "a2b", "a1c"],
        &["n0099", "n0100", "n100", "n1000"],
    ];
    let asset = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wulfd/src/gui/assets/hostlist.js"
    );
    let input = serde_json::json!({ "exprs": exprs, "names": names }).to_string();
    let program = format!(
        "import {{ expand, compress }} from {asset:?};
         const input = JSON.parse(process.argv[1]);
         const ex = input.exprs.map((e) => {{ try {{ return expand(e); }} catch (err) {{ return null; }} }});
         const co = input.names.map((n) => compress(n));
         console.log(JSON.stringify({{ ex, co }}));"
    );
    let o = Command::new("node")
        .args(["--input-type=module", "-e", &program, &input])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "node: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let js: Value = serde_json::from_slice(&o.stdout).unwrap();
    for (i, e) in exprs.iter().enumerate() {
        let w = Command::new(wulf_bin())
            .args(["hostlist", "expand", e])
            .output()
            .unwrap();
        let want: Value = if w.status.success() {
            String::from_utf8_lossy(&w.stdout)
                .lines()
                .map(|l| Value::from(l.to_string()))
                .collect()
        } else {
            assert_eq!(w.status.code(), Some(2), "wulf hostlist expand {e:?}");
            Value::Null
        };
        assert_eq!(js["ex"][i], want, "expand {e:?}");
    }
    for (i, n) in names.iter().enumerate() {
        let w = Command::new(wulf_bin())
            .args(["hostlist", "compress"])
            .args(*n)
            .output()
            .unwrap();
        assert!(w.status.success());
        let want = String::from_utf8_lossy(&w.stdout).trim().to_string();
        assert_eq!(js["co"][i], want, "compress {n:?}");
    }
}

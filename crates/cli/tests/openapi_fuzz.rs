//! schemathesis (PyPI, a fuzzer we did not write) against a live head, driven by
//! docs/openapi.json: every operation of the document, a bounded number of generated requests
//! each, positive and negative. The run fails on any server error (5xx), on an answer whose
//! status, content type or body the document does not describe, on a request the document
//! calls invalid that the head accepts, and on a route that answers without its token.
//!
//! Nothing is excluded. Three query values are pinned instead of generated, because a valid
//! request with a large value waits that long by design and would only spend the time budget:
//! `wait` of `GET /api/v1/node/commands` (an agent's long poll, up to 30 s), `wait` of
//! `GET /api/v1/log` (following the log, up to 60 s) and `since` of
//! `GET /api/v1/node/status/summary` (answers when the change counter passes it, or after
//! 10 s). docs/security.md ("API description") says the same.
//!
//! ./test.sh installs schemathesis into a virtualenv at [`VENV`]; when that is missing this
//! test installs it the same way.

mod head;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use head::run_ok as run;
use head::Head;
use serde_json::{json, Value};

/// Where ./test.sh puts the virtualenv.
const VENV: &str = "/opt/wulf-test/schemathesis";
/// Generated requests per operation and phase.
const EXAMPLES: u32 = 100;
/// The bound on the whole schemathesis run.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// The seed, so a failure can be replayed (WULF_FUZZ_SEED picks another).
const SEED: u64 = 8740;
/// The tag of the operations nodes call with their own credential.
const NODE_TAG: &str = "nodes";

/// The `st` program, installed when missing.
fn schemathesis() -> PathBuf {
    let bin = Path::new(VENV).join("bin/st");
    if !bin.exists() {
        // The same steps as ./test.sh.
        std::fs::create_dir_all(Path::new(VENV).parent().unwrap()).unwrap();
        run(Command::new("/usr/bin/python3").args(["-m", "venv", VENV]));
        run(Command::new(Path::new(VENV).join("bin/pip")).args(["install", "-q", "schemathesis"]));
    }
    assert!(
        bin.exists(),
        "{} is missing after installing",
        bin.display()
    );
    bin
}

/// The base URL of the API and the CA to verify it with (when it is HTTPS). The port serves
/// the API only on HTTPS once the head has its cluster CA, so a plain http:// harness URL is
/// taken as https:// on the same port then.
fn endpoint(h: &Head) -> (String, Option<PathBuf>) {
    let url = h.url();
    let ca = h.data().join("tls").join("ca.pem");
    if url.starts_with("https://") {
        return (url, Some(ca));
    }
    if ca.exists() {
        return (url.replacen("http://", "https://", 1), Some(ca));
    }
    (url, None)
}

struct Api<'a> {
    h: &'a Head,
    base: String,
    ca: Option<PathBuf>,
}

impl Api<'_> {
    /// curl `method path` with `args`; (status, body).
    fn call(&self, method: &str, path: &str, args: &[&str]) -> (u16, Vec<u8>) {
        let url = format!("{}{path}", self.base);
        let ca = self.ca.as_ref().map(|c| c.display().to_string());
        let mut a = vec!["-X", method, "--max-time", "30"];
        if let Some(ca) = &ca {
            a.extend(["--cacert", ca.as_str()]);
        }
        a.extend(args);
        a.push(&url);
        self.h.curl(&a)
    }

    /// An admin request with a JSON body; the JSON answer, which must have status `want`.
    fn admin(&self, method: &str, path: &str, body: Option<&Value>, want: u16) -> Value {
        let auth = self.h.auth();
        let data = body.map(Value::to_string);
        let mut args = vec!["-H", auth.as_str()];
        if let Some(d) = &data {
            args.extend(["-H", "Content-Type: application/json", "--data", d.as_str()]);
        }
        let (code, out) = self.call(method, path, &args);
        assert_eq!(
            code,
            want,
            "{method} {path}: {}\nhead log:\n{}",
            String::from_utf8_lossy(&out),
            self.h.log()
        );
        serde_json::from_slice(&out).unwrap_or(Value::Null)
    }

    /// Upload `file`; its sha256.
    fn upload(&self, path: &str, file: &Path) -> String {
        let auth = self.h.auth();
        let data = format!("@{}", file.display());
        let (code, out) = self.call(
            "PUT",
            path,
            &[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &data,
            ],
        );
        assert_eq!(code, 200, "PUT {path}: {}", String::from_utf8_lossy(&out));
        let v: Value = serde_json::from_slice(&out).unwrap();
        let field = path.split('/').nth(6).unwrap().split('?').next().unwrap();
        v[0][field]["sha256"].as_str().unwrap().to_string()
    }
}

/// What the run is told about the cluster it fuzzes.
struct Fixture {
    /// The bootstrap token.
    token: String,
    /// A simulated node that enrolled and reported: its UID and `node:UID:CREDENTIAL`.
    node_uid: String,
    node_token: String,
    /// The sha256 of the uploaded kernel and image.
    files: Vec<String>,
    /// This head's name.
    head: String,
}

/// A few objects of every kind, so lists, selections and file routes have something to find,
/// and a simulated node that enrolled and reported.
fn populate(api: &Api) -> Fixture {
    api.admin(
        "POST",
        "/api/v1/attrib",
        Some(&json!({"name": "gpus", "attributes": {"_status_secs": "30", "rack": "r1"}})),
        201,
    );
    api.admin("POST", "/api/v1/image", Some(&json!({"name": "img1"})), 201);
    api.admin(
        "POST",
        "/api/v1/boot",
        Some(&json!({"name": "b1", "cmdline": "console=ttyS0", "image": "img1"})),
        201,
    );
    api.admin(
        "POST",
        "/api/v1/pool",
        Some(&json!({"name": "gpu", "pattern": "gpu{:03d}", "first_index": 1000})),
        201,
    );
    api.admin(
        "POST",
        "/api/v1/net",
        Some(
            &json!({"name": "cluster", "first_ip": "10.10.0.10", "ip_count": 100,
                     "mask_bits": 16, "router_ip": "10.10.0.1", "domain": "cluster.local",
                     "host_ranges": ["10.10.1.1-10.10.1.50"]}),
        ),
        201,
    );
    api.admin(
        "POST",
        "/api/v1/host",
        Some(&json!({"name": "switch1", "ip": "10.10.1.5", "mac": "52:54:00:00:10:01"})),
        201,
    );
    api.admin(
        "POST",
        "/api/v1/node",
        Some(&json!([
            {"name": "n0", "index": 0, "mac": "52:54:00:00:00:01", "groups": ["gpus"],
             "attributes": {"_boot_config": "b1"}},
            {"name": "n1", "index": 1, "mac": "52:54:00:00:00:02", "type": "simulated"}
        ])),
        201,
    );
    api.admin(
        "POST",
        "/api/v1/admin",
        Some(&json!({"name": "viewer1", "role": "viewer", "password": "correct horse"})),
        201,
    );
    let dir = tempfile::tempdir().unwrap();
    let kernel = head::write(dir.path(), "vmlinuz", b"not really a kernel\n");
    let image = head::write(dir.path(), "img1.tar", &[7u8; 4096]);
    let files = vec![
        api.upload("/api/v1/boot/b1/files/kernel?filename=vmlinuz", &kernel),
        api.upload("/api/v1/image/img1/files/content?filename=img1.tar", &image),
    ];
    let head = api.admin("GET", "/api/v1/info", None, 200)["head"]
        .as_str()
        .unwrap()
        .to_string();

    // The simulated node boots and enrolls from this address, as its agent would.
    let (code, script) = api.call("GET", "/boot/ipxe?mac=52:54:00:00:00:02", &[]);
    let script = String::from_utf8_lossy(&script).into_owned();
    assert_eq!(code, 200, "{script}");
    let param = |name: &str| {
        script
            .split_whitespace()
            .find_map(|t| t.strip_prefix(&format!("wulf.{name}=")))
            .unwrap_or_else(|| panic!("no wulf.{name}= in the boot script:\n{script}"))
            .to_string()
    };
    let (uid, token) = (param("node"), param("enroll"));
    let body = json!({"node": uid, "token": token}).to_string();
    let (code, out) = api.call(
        "POST",
        "/api/v1/node/enroll",
        &["-H", "Content-Type: application/json", "--data", &body],
    );
    assert_eq!(code, 200, "enroll: {}", String::from_utf8_lossy(&out));
    let reply: Value = serde_json::from_slice(&out).unwrap();
    let node_token = format!("node:{uid}:{}", reply["credential"].as_str().unwrap());
    let auth = format!("Authorization: Bearer {node_token}");
    let report = json!({"node": uid, "uptime_secs": 12.5, "interval_secs": 10}).to_string();
    let (code, out) = api.call(
        "POST",
        "/api/v1/node/status",
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data",
            &report,
        ],
    );
    assert_eq!(
        code,
        200,
        "status report: {}",
        String::from_utf8_lossy(&out)
    );
    Fixture {
        token: api.h.token(),
        node_uid: uid,
        node_token,
        files,
        head,
    }
}

/// The schemathesis configuration: the two bearer tokens by security scheme, known-good
/// selections and the node's UID mixed into the generated values, and the two pinned waits
/// (see the top).
fn config(f: &Fixture) -> String {
    let mut selectors = vec![
        "n0",
        "n1",
        "n[0-1]",
        "%gpus",
        "gpus",
        "b1",
        "img1",
        "gpu",
        "cluster",
        "switch1",
        "default",
        "viewer1",
        "52:54:00:00:00:01",
        "10.10.0.11",
        "0",
        "nosuch",
    ];
    selectors.push(&f.head);
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let files: Vec<&str> = f.files.iter().map(String::as_str).collect();
    format!(
        r#"request-timeout = 20.0

[auth.openapi.accountBearer]
bearer = "{token}"

[auth.openapi.nodeBearer]
bearer = "{node_token}"

[dictionaries.selectors]
values = [{selectors}]

[dictionaries.files]
values = [{files}]

[dictionaries.objects]
values = ["b1", "img1", "n0", "nosuch"]

[dictionaries.node]
values = ["{node_uid}"]

[parameters]
"query.ids" = {{ dictionary = "selectors", probability = 0.5 }}
"path.id" = {{ dictionary = "objects", probability = 0.5 }}
"body.node" = {{ dictionary = "node", probability = 0.7 }}
"path.sha256" = {{ dictionary = "files", probability = 0.5 }}

[[operations]]
include-name = "GET /api/v1/node/commands"
parameters = {{ "query.wait" = 0 }}

[[operations]]
include-name = "GET /api/v1/node/status/summary"
parameters = {{ "query.since" = 0 }}

[[operations]]
include-name = "GET /api/v1/log"
parameters = {{ "query.wait" = 0 }}
"#,
        token = f.token,
        node_uid = f.node_uid,
        node_token = f.node_token,
        selectors = list(&selectors),
        files = list(&files),
    )
}

/// Run schemathesis on the operations `filter` selects (`--include-tag …`); returns its
/// output, after failing the test when it failed or ran out of time.
fn fuzz(
    h: &Head,
    cfg: &Path,
    base: &str,
    ca: Option<&Path>,
    filter: &[&str],
    want_ops: usize,
) -> String {
    let st = schemathesis();
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let seed = std::env::var("WULF_FUZZ_SEED").unwrap_or_else(|_| SEED.to_string());
    let work = cfg.parent().unwrap();
    let mut cmd = Command::new(&st);
    cmd.arg("--no-color")
        .arg("--config-file")
        .arg(cfg)
        .arg("run")
        .arg(&doc)
        .args(["--url", base])
        .args(filter)
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection,ignored_auth",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &EXAMPLES.to_string()])
        .args(["--seed", &seed])
        // One worker: hypothesis describes strategies with Python's ast module, which is not
        // safe to use from several threads on Debian's Python 3.11.
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "all"])
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ca) = ca {
        cmd.arg("--tls-verify").arg(ca);
    }
    eprintln!("running {cmd:?}");
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = out_reader.join().unwrap() + &err_reader.join().unwrap();
    println!("{out}");
    eprintln!("schemathesis took {:?}", started.elapsed());
    let Some(status) = status else {
        panic!(
            "schemathesis did not finish within {RUN_LIMIT:?}\n{out}\nhead log (tail):\n{}",
            tail(&h.log(), 200)
        );
    };
    assert!(
        status.success(),
        "schemathesis failed ({status}):\n{out}\nhead log (tail):\n{}",
        tail(&h.log(), 200)
    );
    // Nothing selected was left out.
    assert!(
        out.contains(&format!("Selected: {want_ops}/"))
            && out.contains(&format!("Tested: {want_ops}\n")),
        "expected {want_ops} operations to be tested:\n{out}"
    );
    out
}

/// Operations of docs/openapi.json: (all, those tagged `tag`).
fn operations(tag: &str) -> (usize, usize) {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(doc).unwrap()).unwrap();
    let ops: Vec<&Value> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .collect();
    let tagged = ops
        .iter()
        .filter(|o| {
            o["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == tag))
        })
        .count();
    (ops.len(), tagged)
}

#[test]
fn schemathesis_finds_no_server_error() {
    let h = Head::start();
    let (base, ca) = endpoint(&h);
    let api = Api {
        h: &h,
        base: base.clone(),
        ca: ca.clone(),
    };
    let fixture = populate(&api);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("schemathesis.toml");
    std::fs::write(&cfg, config(&fixture)).unwrap();

    // First what nodes send with their own credential, while the enrolled node exists (the
    // second run deletes objects, that node among them); then every other operation.
    let (all, nodes) = operations(NODE_TAG);
    assert_eq!(nodes, 4, "the node routes of auth/table.rs");
    let tag = format!("--include-tag={NODE_TAG}");
    fuzz(&h, &cfg, &base, ca.as_deref(), &[&tag], nodes);
    let tag = format!("--exclude-tag={NODE_TAG}");
    fuzz(&h, &cfg, &base, ca.as_deref(), &[&tag], all - nodes);

    let log = h.log();
    let bad: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        bad.is_empty(),
        "the head logged errors or panics:\n{}",
        bad.join("\n")
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

//! Node credentials and images against a stranger on the private network: the attacks of the
//! threat model in docs/security.md, made with curl from other network namespaces on the
//! head's bridge, against the real wulfd and the real wulf-agent.
//!
//! The lab: the head at 10.83.0.1; n0 (reserved address 10.83.0.10) and n1 (10.83.0.11) each
//! in a namespace of their own; a stranger at 10.83.0.99 that knows the nodes' MACs, steals
//! tokens and, at the end, takes over n0's MAC and address.

mod head;
mod netns;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use head::{wait_for, write, Etcd, Head};
use netns::{sh, Lab};
use serde_json::{json, Value};

const HEAD: &str = "10.83.0.1:8740";
const MAC0: &str = "52:54:00:83:00:01";
const MAC1: &str = "52:54:00:83:00:02";
const STRANGER_MAC: &str = "52:54:00:83:00:99";
const IMAGE: &[u8] = b"etc/shadow root:$6$cluster-secret etc/munge/munge.key";
const IMAGE1: &[u8] = b"another image, n1's";

/// Kills the agent when the test ends, however it ends.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl inside namespace `ns`, checking the head's certificate against the cluster CA;
/// (status, body).
fn curl(ns: &str, ca: &Path, args: &[&str]) -> (u16, Vec<u8>) {
    let out = Lab::cmd(ns, "curl")
        .args([
            "-sS",
            "-m",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .args(args)
        .output()
        .expect("curl must be installed (./test.sh installs it)");
    let mut body = out.stdout;
    let pos = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&body[pos..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(pos);
    (code, body)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `wulf.NAME=` parameters of a boot script.
fn params(script: &str) -> std::collections::BTreeMap<String, String> {
    script
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("wulf.")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_stranger_on_the_wire_cannot_take_a_nodes_credential_or_image() {
    let agent_bin = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent_bin.is_file(),
        "{} is missing: cargo build --release --workspace",
        agent_bin.display()
    );
    let mut lab = Lab::new("10.83.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let ca = h.ca();
    let dir = h.dir.path().to_path_buf();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.83.0.10",
        "ip_count=50",
        "mask_bits=24",
    ]);
    h.ok(&["node", "create", &format!("mac={MAC0}")]);
    h.ok(&["node", "create", &format!("mac={MAC1}")]);
    let k = write(&dir, "vmlinuz", b"a kernel anyone may have");
    let i0 = write(&dir, "root0.tar", IMAGE);
    let i1 = write(&dir, "root1.tar", IMAGE1);
    h.ok(&[
        "image",
        "create",
        "name=img0",
        &format!("content=@{}", i0.display()),
    ]);
    h.ok(&[
        "image",
        "create",
        "name=img1",
        &format!("content=@{}", i1.display()),
    ]);
    for (b, img) in [("b0", "img0"), ("b1", "img1")] {
        h.ok(&[
            "boot",
            "create",
            &format!("name={b}"),
            &format!("image={img}"),
            &format!("kernel=@{}", k.display()),
        ]);
    }
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_boot_config=b0",
        "_status_secs=5",
    ]);
    h.ok(&["node", "-i", "n1", "set", "_boot_config=b1"]);
    let nodes = h.json(&["node", "ls"]);
    let uid = |i: usize| nodes[i]["uid"].as_str().unwrap().to_string();
    let (uid0, uid1) = (uid(0), uid(1));

    let n0 = lab.client(MAC0);
    lab.with_addr(&n0, "10.83.0.10/24");
    let n1 = lab.client(MAC1);
    lab.with_addr(&n1, "10.83.0.11/24");
    let stranger = lab.client(STRANGER_MAC);
    lab.with_addr(&stranger, "10.83.0.99/24");

    let script = |ns: &str, mac: &str| {
        let (code, body) = curl(ns, &ca, &[&format!("http://{HEAD}/boot/ipxe?mac={mac}")]);
        assert_eq!(code, 200, "{}", text(&body));
        text(&body)
    };
    let no_secret = |s: &str| {
        assert!(
            !s.contains("wulf.enroll") && !s.contains("wulf.cred") && !s.contains("kernel "),
            "a secret in:\n{s}"
        );
        assert!(s.contains("chain --autofree"), "no retry in:\n{s}");
    };
    let enroll = |ns: &str, node: &str, token: &str| {
        let body = json!({ "node": node, "token": token }).to_string();
        let (code, out) = curl(
            ns,
            &ca,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
                &format!("https://{HEAD}/api/v1/node/enroll"),
            ],
        );
        (code, text(&out))
    };
    let file = |ns: &str, base: &str, sha: &str, bearer: Option<&str>| {
        let auth = bearer.map(|b| format!("Authorization: Bearer {b}"));
        let mut args = Vec::new();
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        let url = format!("{base}/boot/file/{sha}");
        args.push(&url);
        curl(ns, &ca, &args)
    };
    let report = |ns: &str, bearer: &str, node: &str| {
        let body = json!({"node": node, "uptime_secs": 1.0, "interval_secs": 5}).to_string();
        let (code, out) = curl(
            ns,
            &ca,
            &[
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {bearer}"),
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
                &format!("https://{HEAD}/api/v1/node/status"),
            ],
        );
        (code, text(&out))
    };
    let poll = |ns: &str, bearer: &str| {
        let (code, out) = curl(
            ns,
            &ca,
            &[
                "-H",
                &format!("Authorization: Bearer {bearer}"),
                &format!("https://{HEAD}/api/v1/node/commands?wait=0"),
            ],
        );
        (code, text(&out))
    };
    let state0 = || {
        let all = h.json(&["node", "status"]);
        all.as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "n0").cloned())
            .unwrap_or(Value::Null)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // A stranger asks for n0's boot script (it knows the MAC from any DHCP broadcast): not
    // from n0's address, so no token, no kernel line, nothing secret; an AUDIT warning.
    let s = script(&stranger, MAC0);
    no_secret(&s);
    assert!(s.contains("10.83.0.10"), "{s}");
    assert!(
        h.log().contains("refused an enrollment token") && h.log().contains("10.83.0.99"),
        "{}",
        h.log()
    );

    // n0 boots: its script, asked from its own address, carries a token.
    let p = params(&script(&n0, MAC0));
    let (t1, img_sha) = (p["enroll"].clone(), p["image_sha256"].clone());
    assert!(!p.contains_key("cred"));
    assert_eq!(p["node"], uid0);
    let ksha = h.json(&["boot", "-i", "b0", "ls"])[0]["kernel"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // The kernel goes to anyone; the image to nobody but n0, even with n0's stolen token.
    let http = format!("http://{HEAD}");
    let https = format!("https://{HEAD}");
    let (code, body) = file(&stranger, &http, &ksha, None);
    assert_eq!(
        (code, body.as_slice()),
        (200, &b"a kernel anyone may have"[..])
    );
    let stolen = format!("enroll:{uid0}:{t1}");
    for base in [&http, &https] {
        let (code, body) = file(&stranger, base, &img_sha, None);
        assert_eq!(code, 403, "{base}: {}", text(&body));
        let (code, body) = file(&stranger, base, &img_sha, Some(&stolen));
        assert_eq!(code, 403, "{base}: {}", text(&body));
        assert!(text(&body).contains("10.83.0.99"), "{}", text(&body));
    }
    assert!(
        h.log().contains("refused image img0 to 10.83.0.99"),
        "{}",
        h.log()
    );
    let (code, body) = file(&n0, &http, &img_sha, Some(&stolen));
    assert_eq!((code, body.as_slice()), (200, IMAGE));

    // The stranger enrolls with the stolen token: refused (wrong address), token not used up.
    let (code, body) = enroll(&stranger, &uid0, &t1);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not to 10.83.0.99"), "{body}");
    assert!(
        h.log()
            .contains("refused an enrollment of n0 from 10.83.0.99"),
        "{}",
        h.log()
    );
    // A guessed token: refused.
    let (code, body) = enroll(&n0, &uid0, &"0".repeat(64));
    assert_eq!(code, 403, "{body}");

    // n0 enrolls (curl plays its agent); replaying the used token is refused.
    let (code, body) = enroll(&n0, &uid0, &t1);
    assert_eq!(code, 200, "{body}");
    let c1 = serde_json::from_str::<Value>(&body).unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = enroll(&n0, &uid0, &t1);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("used already"), "{body}");
    assert!(h.log().contains("a used enrollment token"), "{}", h.log());
    let (code, body) = poll(&n0, &format!("node:{uid0}:{c1}"));
    assert_eq!(code, 200, "the fresh credential works: {body}");

    // n0 boots again, and this time the real agent enrolls and reports: the credential
    // rotates.
    let p = params(&script(&n0, MAC0));
    let t2 = p["enroll"].clone();
    let state = dir.join("n0-agent");
    std::fs::create_dir_all(&state).unwrap();
    let cred_file = state.join("run/agent.cred");
    let log = std::fs::File::create(dir.join("n0-agent.log")).unwrap();
    let _agent = Agent(
        Lab::cmd(&n0, agent_bin.to_str().unwrap())
            .args(["--head", &p["head"], "--node", &uid0, "--enroll", &t2])
            .args(["--ca", &p["ca"]])
            .arg("--state-dir")
            .arg(&state)
            .arg("--cred-file")
            .arg(&cred_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let agent_log = || std::fs::read_to_string(dir.join("n0-agent.log")).unwrap_or_default();
    wait_for(
        "n0 is not up through its agent",
        Duration::from_secs(30),
        || state0() == "up",
        || format!("agent:\n{}\nhead:\n{}", agent_log(), h.log()),
    );
    assert!(agent_log().contains("enrolled at"), "{}", agent_log());
    let kept = std::fs::read_to_string(&cred_file).unwrap();
    let c2 = kept
        .lines()
        .find_map(|l| l.strip_prefix("cred="))
        .unwrap()
        .to_string();
    assert_ne!(c1, c2);

    // The credential before the rotation no longer reports, polls or downloads.
    let old = format!("node:{uid0}:{c1}");
    let (code, body) = report(&n0, &old, &uid0);
    assert_eq!(code, 401, "{body}");
    let (code, body) = poll(&n0, &old);
    assert_eq!(code, 401, "{body}");
    let (code, _) = file(&n0, &http, &img_sha, Some(&old));
    assert_eq!(code, 403);
    let (code, body) = file(&n0, &http, &img_sha, Some(&format!("node:{uid0}:{c2}")));
    assert_eq!((code, body.as_slice()), (200, IMAGE));

    // n0 is up: no token for anyone, not even from its own address; no second enrollment.
    no_secret(&script(&stranger, MAC0));
    no_secret(&script(&n0, MAC0));
    assert!(h.log().contains("while the node is up"), "{}", h.log());
    let (code, body) = enroll(&n0, &uid0, &t2);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("is up"), "{body}");
    assert_eq!(state0(), "up", "the attempts did not change n0's state");

    // The stranger takes over n0's MAC and address (n0 unplugged for a moment, still up at
    // the head): still nothing.
    sh(&format!("ip -n {n0} link set eth0 down"));
    sh(&format!(
        "ip -n {stranger} link set eth0 down && ip -n {stranger} addr flush dev eth0 && \
         ip -n {stranger} link set eth0 address {MAC0} && \
         ip -n {stranger} addr add 10.83.0.10/24 dev eth0 && ip -n {stranger} link set eth0 up && \
         ip -n {} neigh flush dev br0",
        lab.srv
    ));
    no_secret(&script(&stranger, MAC0));
    let (code, body) = enroll(&stranger, &uid0, &t2);
    assert_eq!(code, 403, "{body}");
    let (code, _) = file(
        &stranger,
        &http,
        &img_sha,
        Some(&format!("enroll:{uid0}:{t2}")),
    );
    assert_eq!(code, 403);
    sh(&format!(
        "ip -n {stranger} link set eth0 down && ip -n {stranger} addr flush dev eth0 && \
         ip -n {stranger} link set eth0 address {STRANGER_MAC} && \
         ip -n {stranger} addr add 10.83.0.99/24 dev eth0 && ip -n {stranger} link set eth0 up && \
         ip -n {n0} link set eth0 up && ip -n {} neigh flush dev br0",
        lab.srv
    ));

    // n1 enrolls; its credential neither reports for n0, nor passes as n0's, nor reads n0's
    // image or anyone's status.
    let p1 = params(&script(&n1, MAC1));
    let (code, body) = enroll(&n1, &uid1, &p1["enroll"]);
    assert_eq!(code, 200, "{body}");
    let cn1 = serde_json::from_str::<Value>(&body).unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = report(&n1, &format!("node:{uid1}:{cn1}"), &uid0);
    assert_eq!(code, 403, "{body}");
    let (code, body) = report(&n1, &format!("node:{uid0}:{cn1}"), &uid0);
    assert_eq!(code, 401, "{body}");
    let (code, body) = poll(&n1, &format!("node:{uid0}:{cn1}"));
    assert_eq!(code, 401, "{body}");
    let (code, _) = file(&n1, &http, &img_sha, Some(&format!("node:{uid1}:{cn1}")));
    assert_eq!(code, 403);
    let (code, _) = curl(
        &n1,
        &ca,
        &[
            "-H",
            &format!("Authorization: Bearer node:{uid1}:{cn1}"),
            &format!("https://{HEAD}/api/v1/node/status"),
        ],
    );
    assert!(code == 401 || code == 403, "a node read the status: {code}");
    let (code, body) = file(
        &n1,
        &http,
        &p1["image_sha256"],
        Some(&format!("node:{uid1}:{cn1}")),
    );
    assert_eq!((code, body.as_slice()), (200, IMAGE1));

    // Status intake and the command channel say nothing to the stranger without a credential.
    let (code, _) = report(&stranger, "nothing", &uid0);
    assert_eq!(code, 401);
    let (code, _) = poll(&stranger, &format!("node:{uid0}:{}", "0".repeat(64)));
    assert_eq!(code, 401);

    // n0's agent kept reporting through all of it.
    assert_eq!(state0(), "up", "{}", agent_log());
}

/// The boot script of a simulated node carries a token too (simulated nodes are exempt from
/// the reserved-address rule: one `wulf sim` plays them all from one address), and `wulf
/// sim` enrolls each of its nodes with it.
#[test]
fn simulated_nodes_enroll_from_the_simulators_address() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    let sim = Command::new(head::wulf_bin())
        .args(["sim", "--nodes", "3", "--boot-secs", "0", "--duration", "4"])
        .env("WULF_DATA_DIR", h.data())
        .env("HOME", h.dir.path())
        .env_remove("WULF_URL")
        .env_remove("WULF_TOKEN")
        .env_remove("WULF_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&sim.stderr);
    assert!(sim.status.success(), "{err}");
    assert!(err.contains("3 simulated nodes booted"), "{err}");
    assert!(err.contains(" 0 errors"), "{err}");
    let enrolled = h.log().matches("enrolled n").count();
    assert_eq!(enrolled, 3, "{}", h.log());
}

/// Two heads on one etcd: a credential enrolled at one is checked by the other, a rotation
/// at one ends the old credential at the other within a second, and a head lacking an image
/// fetches it from its peer (with a head's proof, which a stranger cannot forge) for the node.
#[test]
fn every_head_checks_the_current_credential_and_peers_fetch_images() {
    let etcd = Etcd::start();
    let head = |name: &str| {
        Head::start_configured(
            None,
            &format!(
                "head_name = \"{name}\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n\
                 [dns]\nenabled = false\n"
            ),
            &["--store", &format!("etcd://127.0.0.1:{}", etcd.port)],
        )
    };
    let a = head("head-a");
    let b = head("head-b");
    let dir = a.dir.path();
    let img = write(dir, "root.tar", IMAGE);
    let k = write(dir, "vmlinuz", b"kernel");
    a.ok(&[
        "image",
        "create",
        "name=img",
        &format!("content=@{}", img.display()),
    ]);
    a.ok(&[
        "boot",
        "create",
        "name=b0",
        "image=img",
        &format!("kernel=@{}", k.display()),
    ]);
    a.ok(&["node", "create", &format!("mac={MAC0}"), "type=simulated"]);
    a.ok(&["node", "-i", "n0", "set", "_boot_config=b0"]);
    wait_for(
        "B did not see the node",
        Duration::from_secs(5),
        || b.ok(&["node", "ls"]).contains("n0"),
        String::new,
    );
    let poll = |h: &Head, uid: &str, cred: &str| {
        h.curl(&[
            "-H",
            &format!("Authorization: Bearer node:{uid}:{cred}"),
            &format!("{}/api/v1/node/commands?wait=0", h.url()),
        ])
        .0
    };

    // Enrolled at A; B checks the credential too.
    let p = a.boot_params(MAC0);
    let (uid, c1, img_sha) = (
        p["node"].clone(),
        p["cred"].clone(),
        p["image_sha256"].clone(),
    );
    assert_eq!(poll(&b, &uid, &c1), 200);

    // Enrolled again at A (another boot): the old credential stops at B within a second.
    let c2 = a.boot_params(MAC0)["cred"].clone();
    assert_ne!(c1, c2);
    wait_for(
        "B still takes the credential from before the rotation",
        Duration::from_secs(1),
        || poll(&b, &uid, &c1) == 401,
        || b.log(),
    );
    assert_eq!(poll(&b, &uid, &c2), 200);
    assert_eq!(poll(&a, &uid, &c1), 401);

    // B lacks the image: it fetches it from A with a head's proof, for the node only.
    let url = format!("{}/boot/file/{img_sha}", b.http_url());
    let (code, _) = b.curl(&[&url]);
    assert_eq!(code, 403);
    let (code, body) = b.curl(&[
        "-H",
        &format!("Authorization: Bearer node:{uid}:{c2}"),
        &url,
    ]);
    assert_eq!((code, body.as_slice()), (200, IMAGE), "{}", b.log());
    assert!(
        b.log().contains("fetched a file from a peer head"),
        "{}",
        b.log()
    );
    // A forged or stale head's proof is refused.
    let forged = format!("Authorization: Bearer head:{}:{}", 1, "0".repeat(64));
    let (code, _) = a.curl(&[
        "-H",
        &forged,
        &format!("{}/boot/file/{img_sha}", a.http_url()),
    ]);
    assert_eq!(code, 403);
}

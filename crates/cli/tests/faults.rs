//! Fault tests of several heads on a 3-member etcd, with real components only: Debian's
//! etcd, the real `wulfd` heads, the real `wulf` CLI and `curl` as writers, `wulf sim` nodes,
//! dhclient, udhcpc and perfdhcp as DHCP clients. Processes are SIGKILLed and restarted while
//! they work; at the end every acknowledged write must be there, exactly as acknowledged,
//! through every head and in every etcd member. See docs/faults.md.
//!
//! Each test starts a dozen processes: they run one at a time (`serial()`).

mod cluster;
mod head;
mod netns;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster::{wait_for, Cluster, Ep};
use serde_json::{json, Value};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Heads without DHCP, TFTP or DNS (the write tests need only the API).
const API_ONLY: &str = "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n";

// ---------------------------------------------------------------------------------------
// Writers and the acknowledged-write checker
// ---------------------------------------------------------------------------------------

/// One logical write. Each has a content no other write has, so the checker can tell
/// exactly which write produced what it finds.
#[derive(Clone, Debug)]
enum Write {
    /// A node with this MAC.
    CreateNode { mac: String },
    /// Attribute `key=value` on the node with this MAC.
    SetNode {
        mac: String,
        key: String,
        value: String,
    },
    /// Attribute `key=value` on attribute group `group`.
    SetGroup {
        group: String,
        key: String,
        value: String,
    },
}

#[derive(Debug)]
struct Outcome {
    write: Write,
    /// Some request for it was acknowledged (exit 0 / HTTP 2xx).
    acked: bool,
    /// Requests sent (1 + retries).
    attempts: u32,
    /// When it was acknowledged.
    at: Option<Instant>,
}

/// Totals over every writer.
#[derive(Debug, Default)]
struct Tally {
    attempted: usize,
    acknowledged: usize,
    refused: usize,
    /// Logical writes never acknowledged after every retry (their outcome is unknown).
    given_up: usize,
    /// Creates whose retry found the node there: an earlier attempt was applied although
    /// its answer was an error (a store timeout), so the write is done.
    applied_earlier: usize,
    /// Some refusals, for the report.
    sample_errors: Vec<String>,
    /// Refusals by cause (see `cause`).
    causes: BTreeMap<&'static str, usize>,
    /// Every request: when it ended, how long it took, and its error if it was refused.
    requests: Vec<(Instant, Duration, Option<String>)>,
}

/// Send one write through `ep`: with the `wulf` CLI, or with curl against the REST API.
/// Ok on exit 0 / HTTP 2xx, else the error text.
fn send(ep: &Ep, w: &Write, with_curl: bool) -> Result<(), String> {
    if with_curl {
        let (code, body) = match w {
            Write::CreateNode { mac } => ep.api("POST", "/node", Some(&json!([{ "mac": mac }]))),
            Write::SetNode { mac, key, value } => ep.api(
                "PATCH",
                &format!("/node?ids={mac}"),
                Some(&json!({ "set_attributes": { key: value } })),
            ),
            Write::SetGroup { group, key, value } => ep.api(
                "PATCH",
                &format!("/attrib?ids={group}"),
                Some(&json!({ "set_attributes": { key: value } })),
            ),
        };
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(format!(
                "curl via {}: HTTP {code} {}",
                ep.name,
                String::from_utf8_lossy(&body).trim()
            ))
        }
    } else {
        let kv;
        let args: Vec<&str> = match w {
            Write::CreateNode { mac } => {
                kv = format!("mac={mac}");
                vec!["node", "create", &kv]
            }
            Write::SetNode { mac, key, value } => {
                kv = format!("{key}={value}");
                vec!["node", "-i", mac, "set", &kv]
            }
            Write::SetGroup { group, key, value } => {
                kv = format!("{key}={value}");
                vec!["attrib", "-i", group, "set", &kv]
            }
        };
        let o = ep.wulf(&args);
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "wulf via {} ({}): {}",
                ep.name,
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    }
}

/// A writer thread: logical writes one after another until `stop`, each retried through the
/// next head (up to 8 requests, 250 ms apart) until acknowledged.
fn writer(
    w: usize,
    eps: &[Ep],
    stop: &AtomicBool,
    out: &Mutex<Vec<Outcome>>,
    tally: &Mutex<Tally>,
) {
    let with_curl = w % 2 == 1;
    let mut mine: Vec<String> = Vec::new();
    let nonce = std::process::id();
    for seq in 0..100_000usize {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("w{w}s{seq}");
        let value = format!("v{seq}-{nonce:x}-{}", seq * 7919 % 10007);
        let write = if mine.is_empty() || seq % 4 == 0 {
            Write::CreateNode {
                mac: format!("02:7a:{w:02x}:00:{:02x}:{:02x}", seq >> 8, seq & 0xff),
            }
        } else if seq % 4 == 1 {
            Write::SetGroup {
                group: format!("g{w}"),
                key,
                value,
            }
        } else {
            Write::SetNode {
                mac: mine[seq % mine.len()].clone(),
                key,
                value,
            }
        };
        let mut o = Outcome {
            write,
            acked: false,
            attempts: 0,
            at: None,
        };
        for attempt in 0..8 {
            let ep = &eps[(w + seq + attempt) % eps.len()];
            o.attempts += 1;
            let t = Instant::now();
            let r = match send(ep, &o.write, with_curl) {
                Err(e)
                    if attempt > 0
                        && matches!(o.write, Write::CreateNode { .. })
                        && e.contains("already used") =>
                {
                    // This writer's MACs are its own: the node is there because an earlier
                    // attempt of this create was applied though it answered with an error.
                    tally.lock().unwrap().applied_earlier += 1;
                    Ok(())
                }
                other => other,
            };
            tally
                .lock()
                .unwrap()
                .requests
                .push((Instant::now(), t.elapsed(), r.clone().err()));
            match r {
                Ok(()) => {
                    o.acked = true;
                    o.at = Some(Instant::now());
                    break;
                }
                Err(e) => {
                    let mut t = tally.lock().unwrap();
                    t.refused += 1;
                    *t.causes.entry(cause(&e)).or_default() += 1;
                    if t.sample_errors.len() < 12 {
                        t.sample_errors.push(e);
                    }
                    drop(t);
                    sleep_ms(250);
                }
            }
        }
        if o.acked {
            if let Write::CreateNode { mac } = &o.write {
                mine.push(mac.clone());
            }
        }
        let mut t = tally.lock().unwrap();
        t.attempted += o.attempts as usize;
        t.acknowledged += usize::from(o.acked);
        t.given_up += usize::from(!o.acked);
        drop(t);
        out.lock().unwrap().push(o);
    }
}

/// Run `n` writers through `eps` while `faults` runs on this thread; stop them when it
/// returns. Returns every outcome and the totals.
fn with_writers<R>(
    n: usize,
    eps: &[Ep],
    faults: impl FnOnce(&Mutex<Vec<Outcome>>) -> R,
) -> (Vec<Outcome>, Tally, R) {
    let stop = AtomicBool::new(false);
    let out = Mutex::new(Vec::new());
    let tally = Mutex::new(Tally::default());
    let r = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|w| {
                let (stop, out, tally) = (&stop, &out, &tally);
                s.spawn(move || writer(w, eps, stop, out, tally))
            })
            .collect();
        // Stop the writers even if a fault step panics.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let guard = StopOnDrop(&stop);
        let r = faults(&out);
        drop(guard);
        for h in handles {
            h.join().unwrap();
        }
        r
    });
    (out.into_inner().unwrap(), tally.into_inner().unwrap(), r)
}

/// The attribute groups the writers set attributes on.
fn writer_groups(ep: &Ep, n: usize) {
    for w in 0..n {
        let o = ep.wulf(&["attrib", "create", &format!("name=g{w}")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Every node and attribute group as one head sees them, read with the real CLI (retried
/// while the head is still settling after a restart).
fn read_all(ep: &Ep) -> (Vec<Value>, Vec<Value>) {
    let mut last = String::new();
    for _ in 0..50 {
        let nodes = ep.json(&["node", "ls"]);
        let groups = ep.json(&["attrib", "ls"]);
        if let (Some(Value::Array(n)), Some(Value::Array(g))) = (nodes, groups) {
            return (n, g);
        }
        last = String::from_utf8_lossy(&ep.wulf(&["node", "ls"]).stderr).to_string();
        sleep_ms(200);
    }
    panic!("{} does not list nodes and groups: {last}", ep.name);
}

/// Check one head's view against every outcome; returns how many acknowledged writes were
/// found. Panics on any acknowledged write missing or different, any duplicate MAC, index,
/// IP, name or UID, and any attribute no write produced.
fn check_view(who: &str, nodes: &[Value], groups: &[Value], outcomes: &[Outcome]) -> usize {
    // Invariants: every object is a well-formed document; MAC, index, IP, name, UID unique.
    let mut seen: HashMap<&str, HashSet<String>> = HashMap::new();
    for n in nodes {
        let uid = n["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: node without uid: {n}"));
        assert!(
            uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{who}: bad uid in {n}"
        );
        assert!(n["name"].is_string(), "{who}: node without name: {n}");
        assert!(n["index"].is_u64(), "{who}: node without index: {n}");
        assert!(
            n["attributes"].is_object() || n["attributes"].is_null(),
            "{who}: bad attributes: {n}"
        );
        for f in ["uid", "name", "index", "mac", "ip"] {
            if n[f].is_null() {
                continue;
            }
            let v = n[f].to_string();
            assert!(
                seen.entry(f).or_default().insert(v.clone()),
                "{who}: two nodes have {f} {v}"
            );
        }
    }
    let by_mac: HashMap<&str, &Value> = nodes
        .iter()
        .filter_map(|n| Some((n["mac"].as_str()?, n)))
        .collect();
    let group: HashMap<&str, &Value> = groups
        .iter()
        .filter_map(|g| Some((g["name"].as_str()?, g)))
        .collect();
    // What was attempted, so anything found can be traced to a write.
    let mut tried_macs = HashSet::new();
    let mut tried_attrs: HashSet<(String, String, String)> = HashSet::new();
    for o in outcomes {
        match &o.write {
            Write::CreateNode { mac } => {
                tried_macs.insert(mac.clone());
            }
            Write::SetNode { mac, key, value } => {
                tried_attrs.insert((mac.clone(), key.clone(), value.clone()));
            }
            Write::SetGroup { group, key, value } => {
                tried_attrs.insert((group.clone(), key.clone(), value.clone()));
            }
        }
    }
    let mut verified = 0;
    for o in outcomes.iter().filter(|o| o.acked) {
        match &o.write {
            Write::CreateNode { mac } => {
                assert!(
                    by_mac.contains_key(mac.as_str()),
                    "{who}: acknowledged node {mac} is missing"
                );
            }
            Write::SetNode { mac, key, value } => {
                let n = by_mac
                    .get(mac.as_str())
                    .unwrap_or_else(|| panic!("{who}: node {mac} is missing"));
                assert_eq!(
                    n["attributes"][key].as_str(),
                    Some(value.as_str()),
                    "{who}: acknowledged {key}={value} on {mac}: {n}"
                );
            }
            Write::SetGroup {
                group: g,
                key,
                value,
            } => {
                let got = group
                    .get(g.as_str())
                    .unwrap_or_else(|| panic!("{who}: group {g} is missing"));
                assert_eq!(
                    got["attributes"][key].as_str(),
                    Some(value.as_str()),
                    "{who}: acknowledged {key}={value} on {g}: {got}"
                );
            }
        }
        verified += 1;
    }
    // Nothing that no write made: every test node and test attribute is one some write sent,
    // with exactly its content (an unacknowledged write may or may not have happened).
    let is_test_key = |k: &str| k.starts_with('w') && k[1..].contains('s');
    for n in nodes {
        let mac = n["mac"].as_str().unwrap_or("");
        if mac.starts_with("02:7a:") {
            assert!(tried_macs.contains(mac), "{who}: node {mac} no write made");
        }
        if let Some(a) = n["attributes"].as_object() {
            for (k, v) in a.iter().filter(|(k, _)| is_test_key(k)) {
                let t = (
                    mac.to_string(),
                    k.clone(),
                    v.as_str().unwrap_or("").to_string(),
                );
                assert!(tried_attrs.contains(&t), "{who}: {t:?} no write made");
            }
        }
    }
    for g in groups {
        let name = g["name"].as_str().unwrap_or("");
        if let Some(a) = g["attributes"].as_object() {
            for (k, v) in a.iter().filter(|(k, _)| is_test_key(k)) {
                let t = (
                    name.to_string(),
                    k.clone(),
                    v.as_str().unwrap_or("").to_string(),
                );
                assert!(tried_attrs.contains(&t), "{who}: {t:?} no write made");
            }
        }
    }
    verified
}

/// Read `/wulf/obj/` and `/wulf/idx/` straight from every etcd member's own copy
/// (serializable reads, with curl on etcd's gateway): every member has the same revision and
/// the same keys and values, every object parses, and the uniqueness keys are exactly those
/// the objects hold, each owned by its object (no key missing, none left behind). Returns the
/// node objects (uid → document).
/// A head's name, its nodes and its attribute groups.
type View = (String, Vec<Value>, Vec<Value>);

/// Check every head's view (`check_view`) and that it lists exactly the nodes etcd holds.
/// Returns the writes verified and each head's view.
fn check_heads(
    eps: &[Ep],
    in_etcd: &BTreeMap<String, Value>,
    outcomes: &[Outcome],
) -> (usize, Vec<View>) {
    let mut views = Vec::new();
    let mut verified = 0;
    for ep in eps {
        let (nodes, groups) = read_all(ep);
        verified = check_view(&ep.name, &nodes, &groups, outcomes);
        let uids: BTreeSet<&str> = nodes.iter().filter_map(|n| n["uid"].as_str()).collect();
        assert!(
            uids.iter().copied().eq(in_etcd.keys().map(String::as_str)),
            "{} lists other nodes than etcd holds",
            ep.name
        );
        views.push((ep.name.clone(), nodes, groups));
    }
    (verified, views)
}

fn check_etcd(c: &Cluster) -> BTreeMap<String, Value> {
    // The heads may still be writing (their shared log lines), so the members are read until
    // one round finds them all at one revision, for up to 10 s.
    let read = |prefix: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut views = Vec::new();
            for m in &c.etcd {
                let (rev, kvs) = m
                    .local_range(prefix)
                    .unwrap_or_else(|| panic!("etcd {} does not answer", m.name));
                views.push((m.name.clone(), rev, kvs));
            }
            let (_, rev0, kvs0) = &views[0];
            let same_rev = views[1..].iter().all(|(_, rev, _)| rev == rev0);
            if !same_rev && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            for (name, rev, kvs) in &views[1..] {
                assert_eq!(rev, rev0, "etcd {name} is at another revision than m0");
                assert!(kvs == kvs0, "etcd {name} holds other {prefix} keys than m0");
            }
            return views.swap_remove(0).2;
        }
    };
    let objs = read("/wulf/obj/");
    let idx: BTreeMap<String, String> = read("/wulf/idx/")
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).to_string()))
        .collect();
    let mut nodes = BTreeMap::new();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &objs {
        let doc: Value = serde_json::from_slice(v)
            .unwrap_or_else(|e| panic!("{k} in etcd is not JSON ({e}): {v:?}"));
        let (kind, uid) = k
            .strip_prefix("/wulf/obj/")
            .and_then(|r| r.split_once('/'))
            .unwrap_or_else(|| panic!("odd key {k}"));
        assert_eq!(doc["uid"], uid, "{k}: {doc}");
        let mut own = |key: String| {
            if let Some(other) = expected.insert(key.clone(), uid.to_string()) {
                panic!("{key} belongs to two objects in etcd: {other} and {uid}");
            }
        };
        if let Some(name) = doc["name"].as_str() {
            own(format!("/wulf/idx/{kind}/name/{name}"));
        }
        if kind == "node" {
            if let Some(i) = doc["index"].as_u64() {
                own(format!("/wulf/idx/node/index/{i}"));
            }
            if let Some(m) = doc["mac"].as_str() {
                own(format!("/wulf/idx/mac/{m}"));
            }
            if let Some(ip) = doc["ip"].as_str() {
                own(format!("/wulf/idx/ip/{ip}"));
            }
            nodes.insert(uid.to_string(), doc);
        }
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, uid)| idx.get(*k) != Some(uid))
        .collect();
    assert!(
        missing.is_empty(),
        "uniqueness keys missing or owned by another object: {missing:?}"
    );
    let stray: Vec<_> = idx
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .collect();
    assert!(
        stray.is_empty(),
        "uniqueness keys no object holds: {stray:?}"
    );
    nodes
}

/// Wait until every etcd member is at one revision (members that were down catch up).
fn wait_members_agree(c: &Cluster) -> Duration {
    wait_for(
        "etcd members reach the same revision",
        Duration::from_secs(20),
        || {
            let st: Vec<_> = c.etcd.iter().map(|m| m.status()).collect();
            st.iter().all(Option::is_some)
                && st
                    .windows(2)
                    .all(|w| w[0].as_ref().map(|s| s.revision) == w[1].as_ref().map(|s| s.revision))
        },
        || {
            format!(
                "{:?}",
                c.etcd.iter().map(|m| m.status()).collect::<Vec<_>>()
            )
        },
    )
}

/// Requests per second from `from`: acknowledged, refused, and the slowest one.
fn print_timeline(t: &Tally, from: Instant) {
    let mut secs: BTreeMap<u64, (usize, usize, Duration)> = BTreeMap::new();
    for (end, took, err) in &t.requests {
        let s = end.saturating_duration_since(from).as_secs();
        let e = secs.entry(s).or_default();
        if err.is_none() {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
        e.2 = e.2.max(*took);
    }
    let line: Vec<String> = secs
        .iter()
        .map(|(s, (a, r, m))| format!("{s}s:{a}/{r}/{}ms", m.as_millis()))
        .collect();
    eprintln!(
        "requests per second (acknowledged/refused/slowest): {}",
        line.join(" ")
    );
}

/// Why a request was refused, from its error text.
fn cause(e: &str) -> &'static str {
    if e.contains("cannot reach the head") || e.contains("HTTP 0 ") || e.ends_with("HTTP 0") {
        "head down"
    } else if e.contains("store unavailable") || e.contains("store backend error") {
        "etcd unavailable to the head (HTTP 503)"
    } else if e.contains("already used") {
        "retry of a create that had been applied (HTTP 409)"
    } else {
        "other"
    }
}

fn print_tally(what: &str, t: &Tally, verified: usize) {
    eprintln!(
        "{what}: {} writes attempted, {} acknowledged, {} refused while a member/head was down \
         (each retried through the next head; {} never acknowledged; {} creates found applied \
         by an earlier attempt that had answered with an error), {verified} verified present",
        t.attempted, t.acknowledged, t.refused, t.given_up, t.applied_earlier
    );
    for (c, n) in &t.causes {
        eprintln!("  refused, {c}: {n}");
    }
    for e in &t.sample_errors {
        eprintln!("  refused: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. An etcd member SIGKILLed under write load catches up
// ---------------------------------------------------------------------------------------

#[test]
fn etcd_member_killed_under_writes_catches_up() {
    let _g = serial();
    let mut c = Cluster::new("10.79.0", API_ONLY);
    c.add_head();
    c.add_head();
    let eps = c.eps.clone();
    writer_groups(&eps[0], 4);
    let leader = c.leader().expect("etcd has a leader");
    let name = c.etcd[leader].name.clone();
    let t0 = Instant::now();
    let (outcomes, tally, (killed, elected, restarted)) = with_writers(4, &eps, |_| {
        sleep_ms(3000);
        // Kill the leader: the other two elect a new one while the writes keep coming.
        c.etcd[leader].kill9();
        let killed = Instant::now();
        let new_leader = || {
            c.etcd
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != leader)
                .filter_map(|(_, m)| m.status())
                .any(|s| !s.leader.is_empty() && s.leader != "0")
                && c.leader().is_some_and(|l| l != leader)
        };
        wait_for(
            "the two members left elect a leader",
            Duration::from_secs(15),
            new_leader,
            || c.logs(),
        );
        let elected = Instant::now();
        // Requests in flight at the kill wait for etcd's request timeout (7 s) and fail;
        // keep the member down well past that, so writes sent to a settled two-member
        // cluster are seen.
        let until = (killed + Duration::from_secs(12)).max(elected + Duration::from_secs(5));
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        c.etcd[leader].restart();
        let restarted = Instant::now();
        sleep_ms(3000);
        (killed, elected, restarted)
    });
    let secs = |t: Instant| (t - t0).as_secs_f64();
    eprintln!(
        "etcd leader {name} SIGKILLed at {:.1} s, new leader elected at {:.1} s, {name} restarted at {:.1} s",
        secs(killed),
        secs(elected),
        secs(restarted)
    );
    print_timeline(&tally, t0);
    let during = outcomes
        .iter()
        .filter(|o| o.at.is_some_and(|t| t > killed && t < restarted))
        .count();
    // Requests sent once the two members left had a leader (plus half a second for the
    // heads to notice) should all go through: two of three members are a quorum.
    let settled = elected + Duration::from_millis(500);
    let refused_after: Vec<(f64, &str)> = tally
        .requests
        .iter()
        .filter(|(end, took, _)| *end - *took > settled && *end < restarted)
        .filter_map(|(end, _, err)| Some((secs(*end), err.as_deref()?)))
        .collect();
    eprintln!(
        "{during} writes acknowledged while {name} was down; {} requests refused though sent after \
         the new leader was elected",
        refused_after.len()
    );
    assert!(
        during > 0,
        "no write was acknowledged while one member of three was down\n{}",
        c.logs()
    );
    let took = wait_members_agree(&c);
    eprintln!("restarted member {name} caught up {took:?} after the writes stopped");
    let in_etcd = check_etcd(&c);
    let (verified, _) = check_heads(&eps, &in_etcd, &outcomes);
    print_tally("member kill", &tally, verified);
    assert!(tally.acknowledged > 0);
    assert!(
        refused_after.is_empty(),
        "{} writes were refused though two of three etcd members (a quorum, with a leader) were \
         up, the first (at seconds from the start): {:#?}",
        refused_after.len(),
        &refused_after[..refused_after.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------
// 4. The acknowledged-write checker: heads and members SIGKILLed and restarted
// ---------------------------------------------------------------------------------------

#[test]
fn acknowledged_writes_survive_head_and_member_kills() {
    let _g = serial();
    let mut c = Cluster::new("10.79.0", API_ONLY);
    for _ in 0..3 {
        c.add_head();
    }
    let eps = c.eps.clone();
    writer_groups(&eps[0], 4);
    let log = Mutex::new(Vec::<String>::new());
    let t0 = Instant::now();
    let note = |s: String| {
        eprintln!("[{:5.1} s] {s}", t0.elapsed().as_secs_f64());
        log.lock().unwrap().push(s);
    };
    let (outcomes, tally, ()) = with_writers(4, &eps, |_| {
        let Cluster { heads, etcd, .. } = &mut c;
        let [ha, hb, hc] = &mut heads[..] else {
            panic!("three heads")
        };
        let elected = |etcd: &[cluster::Member], dead: usize| {
            wait_for(
                "the members left elect a leader",
                Duration::from_secs(15),
                || cluster::leader(etcd).is_some_and(|l| l != dead),
                String::new,
            )
        };
        sleep_ms(3000);
        // A head and the etcd leader die together; the writers carry on through the other
        // heads while the two members left elect a leader. Requests in flight at the kill
        // fail after etcd's request timeout (7 s).
        let l = cluster::leader(etcd).expect("a leader");
        note(format!("SIGKILL head-a and etcd leader {}", etcd[l].name));
        ha.kill9();
        etcd[l].kill9();
        let took = elected(etcd, l);
        note(format!("new etcd leader after {took:?}"));
        sleep_ms(8000);
        etcd[l].restart();
        note(format!("etcd {} restarted", etcd[l].name));
        ha.spawn();
        note("head-a restarted".into());
        sleep_ms(1000);

        // A head and a follower.
        let f = (0..etcd.len())
            .find(|&i| Some(i) != cluster::leader(etcd))
            .unwrap();
        note(format!("SIGKILL head-b and etcd follower {}", etcd[f].name));
        hb.kill9();
        etcd[f].kill9();
        sleep_ms(5000);
        etcd[f].restart();
        note(format!("etcd {} restarted", etcd[f].name));
        hb.spawn();
        note("head-b restarted (once its old lease ran out)".into());
        sleep_ms(1000);

        // A head alone, restarted at once: it takes its name back when its lease runs out.
        note("SIGKILL head-c".into());
        hc.kill9();
        sleep_ms(500);
        hc.spawn();
        note("head-c restarted".into());
        sleep_ms(2000);
    });
    eprintln!("faults: {}", log.into_inner().unwrap().join("; "));
    wait_members_agree(&c);
    let in_etcd = check_etcd(&c);
    let (verified, views) = check_heads(&eps, &in_etcd, &outcomes);
    for (name, nodes, groups) in &views[1..] {
        assert!(
            nodes == &views[0].1 && groups == &views[0].2,
            "{name} and {} disagree",
            views[0].0
        );
    }
    print_tally("faults", &tally, verified);
    let creates = outcomes
        .iter()
        .filter(|o| o.acked && matches!(o.write, Write::CreateNode { .. }))
        .count();
    let (applied, absent) = unacknowledged(&views[0].1, &views[0].2, &outcomes);
    eprintln!(
        "faults: {creates} nodes created, {} nodes in etcd, identical on {} members and {} heads; \
         of the writes never acknowledged, {applied} had been applied and {absent} had not",
        in_etcd.len(),
        c.etcd.len(),
        eps.len()
    );
    assert!(
        tally.acknowledged > 100,
        "too few writes: {} acknowledged",
        tally.acknowledged
    );
    assert_eq!(
        tally.causes.get("other"),
        None,
        "refusals of an unexpected kind: {:#?}",
        tally.sample_errors
    );
}

/// Of the writes never acknowledged (their outcome unknown to the writer): how many are
/// in the database anyway, and how many are not.
fn unacknowledged(nodes: &[Value], groups: &[Value], outcomes: &[Outcome]) -> (usize, usize) {
    let node = |mac: &str| nodes.iter().find(|n| n["mac"] == mac);
    let group = |g: &str| groups.iter().find(|x| x["name"] == g);
    let mut applied = 0;
    let mut absent = 0;
    for o in outcomes.iter().filter(|o| !o.acked) {
        let found = match &o.write {
            Write::CreateNode { mac } => node(mac).is_some(),
            Write::SetNode { mac, key, value } => {
                node(mac).is_some_and(|n| n["attributes"][key] == value.as_str())
            }
            Write::SetGroup {
                group: g,
                key,
                value,
            } => group(g).is_some_and(|x| x["attributes"][key] == value.as_str()),
        };
        if found {
            applied += 1;
        } else {
            absent += 1;
        }
    }
    (applied, absent)
}

// ---------------------------------------------------------------------------------------
// 1 and 2. Two heads on a 3-member etcd; head A SIGKILLed while nodes report and a DHCP
// client renews
// ---------------------------------------------------------------------------------------

/// Heads that serve DHCP with a 12 s lease (renewal after ~6 s, rebinding after 10.5 s) and
/// store routine heartbeats every second, so the other head follows them closely.
const DHCP_AND_STATUS: &str = "[dhcp]\nlease_secs = 12\n[tftp]\nenabled = false\n\
    [dns]\nenabled = false\n[status]\npersist_secs = 1\nflush_ms = 200\n";

/// The simulated nodes' status through `ep`: (name, state, head), for nodes in `names`.
fn sim_status(ep: &Ep, names: &BTreeSet<String>) -> Option<Vec<(String, String, String)>> {
    let v = ep.json(&["node", "status"])?;
    Some(
        v.as_array()?
            .iter()
            .filter(|s| s["name"].as_str().is_some_and(|n| names.contains(n)))
            .map(|s| {
                let f = |k: &str| s[k].as_str().unwrap_or("").to_string();
                (f("name"), f("state"), f("head"))
            })
            .collect(),
    )
}

#[test]
fn head_killed_while_nodes_report_and_dhcp_renews() {
    let _g = serial();
    let mut c = Cluster::new("10.79.0", DHCP_AND_STATUS);
    c.add_head();
    let a = c.eps[0].clone();
    let ok = |ep: &Ep, args: &[&str]| {
        let o = ep.wulf(args);
        assert!(
            o.status.success(),
            "wulf {args:?} via {}: {}",
            ep.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // The cluster network holds the heads' addresses (.11, .12): both serve DHCP on it.
    ok(
        &a,
        &[
            "net",
            "create",
            "name=cluster",
            "first_ip=10.79.0.100",
            "ip_count=100",
            "mask_bits=24",
            "router_ip=10.79.0.1",
            "domain=cluster.test",
        ],
    );
    let mac = "02:79:00:00:d0:01";
    ok(&a, &["node", "create", &format!("mac={mac}")]);
    let node = a.json(&["node", "-i", mac, "ls"]).unwrap()[0].clone();
    let reserved = node["ip"].as_str().unwrap().to_string();

    // A real DHCP client takes its lease from A (the only head so far) and keeps renewing.
    let dhns = c.lab.client(mac);
    let dh = cluster::Dhclient::start(&dhns);
    wait_for(
        "dhclient bound by head-a",
        Duration::from_secs(20),
        || dh.parsed().iter().any(|e| e.0 == "BOUND" && e.2 == a.ip),
        || format!("{:?}\n{}\n{}", dh.events(), dh.log(), c.logs()),
    );

    // 1. Head B joins; a write through A is read through B within a second, and back.
    c.add_head();
    let b = c.eps[1].clone();
    let states = b.json(&["head", "ls"]).unwrap();
    let up: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "up")
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(up, ["head-a", "head-b"], "{states}");
    ok(&a, &["node", "-i", mac, "set", "rack=r7"]);
    let took = wait_for(
        "B reads A's write",
        Duration::from_secs(1),
        || {
            b.json(&["node", "-i", mac, "ls"])
                .is_some_and(|v| v[0]["attributes"]["rack"] == "r7")
        },
        || c.logs(),
    );
    eprintln!("written through head-a, read through head-b after {took:?}");
    ok(&b, &["attrib", "create", "name=from-b"]);
    let took = wait_for(
        "A reads B's write",
        Duration::from_secs(1),
        || {
            a.json(&["attrib", "-i", "from-b", "ls"])
                .is_some_and(|v| v[0]["name"] == "from-b")
        },
        || c.logs(),
    );
    eprintln!("written through head-b, read through head-a after {took:?}");
    // And every etcd member holds it (read from each member's own copy).
    let uid = node["uid"].as_str().unwrap();
    for m in &c.etcd {
        let (_, kvs) = m.local_range(&format!("/wulf/obj/node/{uid}")).unwrap();
        let doc: Value = serde_json::from_slice(&kvs[0].1).unwrap();
        assert_eq!(doc["attributes"]["rack"], "r7", "etcd {}: {doc}", m.name);
    }

    // 2. Simulated nodes report to A every second; A's answers name B too (it refreshes its
    // list of live heads every 3 s).
    ok(
        &a,
        &["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"],
    );
    sleep_ms(3500);
    let simns = c.lab.client("02:79:00:00:03:01");
    c.lab.with_addr(&simns, "10.79.0.40/24");
    let a_url = format!("https://{}:8740", a.ip);
    let a_ca = a.ca.display().to_string();
    let sim = cluster::Proc::start(
        &simns,
        head::wulf_bin(),
        &[
            "sim",
            "--nodes",
            "16",
            "--url",
            &a_url,
            "--heads",
            &a_url,
            "--token",
            &a.token,
            "--ca",
            &a_ca,
            "--boot-secs",
            "1",
            "--connections",
            "4",
            "--stats",
            "2",
        ],
    );
    let names: BTreeSet<String> = {
        let mut n = BTreeSet::new();
        wait_for(
            "wulf sim created its 16 nodes",
            Duration::from_secs(20),
            || {
                n = a
                    .json(&["node", "ls"])
                    .map(|v| {
                        v.as_array()
                            .unwrap()
                            .iter()
                            .filter(|n| n["type"] == "simulated")
                            .filter_map(|n| Some(n["name"].as_str()?.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                n.len() == 16
            },
            || sim.stderr(),
        );
        n
    };
    wait_for(
        "the 16 nodes are up on A, and on B through the store",
        Duration::from_secs(20),
        || {
            [&a, &b].iter().all(|ep| {
                sim_status(ep, &names).is_some_and(|s| {
                    s.len() == 16 && s.iter().all(|(_, st, h)| st == "up" && h == "head-a")
                })
            })
        },
        || {
            format!(
                "{:?}\n{}\n{}",
                sim_status(&b, &names),
                sim.stderr(),
                c.logs()
            )
        },
    );
    // Kill A right after dhclient renewed with it, so its next renewal goes to a dead head.
    let renewals = |dh: &cluster::Dhclient| {
        dh.parsed()
            .iter()
            .filter(|e| e.0 == "RENEW" && e.2 == a.ip)
            .count()
    };
    let before = renewals(&dh);
    wait_for(
        "dhclient renews with head-a",
        Duration::from_secs(15),
        || renewals(&dh) > before,
        || format!("{:?}\n{}", dh.events(), dh.log()),
    );
    c.heads[0].kill9();
    let killed = Instant::now();
    eprintln!(
        "head-a SIGKILLed; dhclient events so far: {:?}",
        dh.events()
    );

    // Through B, for the next 25 s at most: every node stays up, and moves to B; the DHCP
    // client's renewal to A goes unanswered, its rebinding broadcast is answered by B with
    // the same address.
    let mut samples = 0;
    let mut moved_after = None;
    let mut rebound_after = None;
    while moved_after.is_none() || rebound_after.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(25),
            "25 s after head-a died: nodes on B: {:?}; dhclient: {:?}\n{}\n{}\n{}",
            sim_status(&b, &names),
            dh.events(),
            dh.log(),
            sim.stderr(),
            c.logs()
        );
        let s = sim_status(&b, &names).expect("head-b answers node status");
        samples += 1;
        let down: Vec<_> = s.iter().filter(|(_, st, _)| st != "up").collect();
        assert!(
            s.len() == 16 && down.is_empty(),
            "nodes not up on head-b {:.1} s after head-a died: {down:?}\n{}\n{}",
            killed.elapsed().as_secs_f64(),
            sim.stderr(),
            c.logs()
        );
        if moved_after.is_none() && s.iter().all(|(_, _, h)| h == "head-b") {
            moved_after = Some(killed.elapsed());
        }
        if rebound_after.is_none()
            && dh
                .parsed()
                .iter()
                .any(|e| (e.0 == "REBIND" || e.0 == "RENEW") && e.2 == b.ip)
        {
            rebound_after = Some(killed.elapsed());
        }
        sleep_ms(300);
    }
    let events = dh.parsed();
    for e in &events {
        if !e.1.is_empty() {
            assert_eq!(e.1, reserved, "the client left its reservation: {events:?}");
        }
        assert!(
            !matches!(e.0.as_str(), "EXPIRE" | "FAIL" | "RELEASE"),
            "the client lost its lease: {events:?}"
        );
    }
    eprintln!(
        "after head-a died: all 16 nodes reporting to head-b within {:.1} s and up in all {samples} \
         samples; dhclient rebound to head-b within {:.1} s keeping {reserved}; events: {:?}",
        moved_after.unwrap().as_secs_f64(),
        rebound_after.unwrap().as_secs_f64(),
        dh.events()
    );
    let ids = names.iter().cloned().collect::<Vec<_>>().join(",");
    let long = ok(&b, &["node", "-i", &ids, "status", "-l"]);
    let up_rows = long
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("up"))
        .count();
    eprintln!("wulf node status -l through head-b:\n{long}");
    assert_eq!(up_rows, 16, "{long}");
    // The log of dhclient shows the unicast renewal to A and the broadcast B answered.
    let log = dh.log();
    assert!(
        log.contains(&format!("to {} port 67", a.ip)) && log.contains("to 255.255.255.255 port 67"),
        "{log}"
    );
    assert!(
        log.contains(&format!("DHCPACK of {reserved} from {}", b.ip)),
        "{log}"
    );
    // Stop the simulator (its nodes report a clean shutdown) and show its own account.
    let mut sim = sim;
    unsafe { libc::kill(sim.child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    while sim.child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
        sleep_ms(50);
    }
    let err = sim.stderr();
    eprintln!(
        "wulf sim said:\n{}",
        err.lines()
            .filter(|l| l.starts_with("sim:") || l.contains("failover"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// 5. Exactly-once enrollment: two heads on one wire both try to enroll every new MAC
// ---------------------------------------------------------------------------------------

const ENROLL: &str = "[dhcp]\nlease_secs = 600\n[tftp]\nenabled = false\n[dns]\nenabled = false\n";

/// busybox udhcpc in `ns` until it gets a lease: its address, or None after `tries` s.
fn udhcpc_ip(ns: &str, tries: u32) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ip");
    let script = dir.path().join("s.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $serverid\" > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::process::Command::new("timeout")
        .args(["-s", "KILL", "60", "ip", "netns", "exec", ns])
        .args([
            "busybox", "udhcpc", "-n", "-q", "-f", "-i", "eth0", "-T", "1", "-A", "1",
        ])
        .args(["-t", &tries.to_string(), "-s"])
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    std::fs::read_to_string(&out)
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn enrollment_is_exactly_once_across_heads() {
    let _g = serial();
    cluster::need("perfdhcp", "kea-admin");
    cluster::need("busybox", "busybox-static");
    let mut c = Cluster::new("10.79.0", ENROLL);
    c.add_head();
    c.add_head();
    let (a, b) = (c.eps[0].clone(), c.eps[1].clone());
    // A /16 net holding the heads (10.79.0.11, .12) and the new nodes from 10.79.4.0.
    let o = a.wulf(&[
        "net",
        "create",
        "name=big",
        "first_ip=10.79.4.0",
        "ip_count=1000",
        "mask_bits=16",
        "router_ip=10.79.0.1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = b.wulf(&["cluster", "update", "accept_new_nodes=yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for(
        "both heads serve DHCP on their eth0",
        Duration::from_secs(10),
        || {
            c.heads.iter().all(|h| {
                h.log().contains("DHCP serving eth0") && h.log().contains("DHCP server listening")
            })
        },
        || c.logs(),
    );

    // 100 unknown MACs from perfdhcp, broadcast on the wire (both heads get every DISCOVER;
    // perfdhcp relays, giaddr = its own address), and 4 udhcpc clients of their own.
    let dir = tempfile::tempdir().unwrap();
    let macs: Vec<String> = (0..100u32)
        .map(|i| format!("02:7b:00:00:{:02x}:{:02x}", i >> 8, i & 0xff))
        .collect();
    let file = dir.path().join("macs.txt");
    std::fs::write(&file, macs.join("\n") + "\n").unwrap();
    let perf_ns = c.lab.client("02:79:00:00:04:01");
    c.lab.with_addr(&perf_ns, "10.79.0.40/24");
    let udhcpc_macs: Vec<String> = (0..4).map(|i| format!("02:7b:00:01:00:{i:02x}")).collect();
    let udhcpc_ns: Vec<String> = udhcpc_macs.iter().map(|m| c.lab.client(m)).collect();
    let t = Instant::now();
    let (perf, leases) = std::thread::scope(|s| {
        let perf = s.spawn(|| {
            std::process::Command::new("timeout")
                .args(["-s", "KILL", "60", "ip", "netns", "exec", &perf_ns])
                .args([
                    "perfdhcp", "-4", "-l", "eth0", "-r", "150", "-p", "12", "-d", "2",
                ])
                .arg("-M")
                .arg(&file)
                .output()
                .unwrap()
        });
        let clients: Vec<_> = udhcpc_ns
            .iter()
            .map(|ns| s.spawn(move || udhcpc_ip(ns, 20)))
            .collect();
        let leases: Vec<Option<String>> = clients.into_iter().map(|h| h.join().unwrap()).collect();
        (perf.join().unwrap(), leases)
    });
    let text =
        String::from_utf8_lossy(&perf.stdout).to_string() + &String::from_utf8_lossy(&perf.stderr);
    eprintln!(
        "perfdhcp ran {:.1} s:\n{}",
        t.elapsed().as_secs_f64(),
        text.lines()
            .filter(|l| l.contains("sent packets")
                || l.contains("received packets")
                || l.contains("drops"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        text.contains("sent packets"),
        "perfdhcp did not run:\n{text}"
    );

    let all_macs: BTreeSet<String> = macs.iter().chain(&udhcpc_macs).cloned().collect();
    // Every MAC is a node, exactly once, through both heads.
    let list = || {
        a.json(&["node", "ls"])
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    wait_for(
        "every MAC enrolled",
        Duration::from_secs(20),
        || list().len() >= all_macs.len(),
        || {
            let nodes = list();
            let have: BTreeSet<String> = nodes
                .iter()
                .filter_map(|n| Some(n["mac"].as_str()?.to_string()))
                .collect();
            format!(
                "{} nodes; missing {:?}\nperfdhcp:\n{text}\n{}",
                nodes.len(),
                all_macs.difference(&have).collect::<Vec<_>>(),
                c.logs()
            )
        },
    );
    sleep_ms(1000);
    let in_etcd = check_etcd(&c);
    for ep in [&a, &b] {
        let (nodes, groups) = read_all(ep);
        check_view(&ep.name, &nodes, &groups, &[]);
        let got: Vec<String> = nodes
            .iter()
            .filter_map(|n| Some(n["mac"].as_str()?.to_string()))
            .collect();
        let distinct: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            got.len(),
            distinct.len(),
            "{}: a MAC enrolled twice",
            ep.name
        );
        assert_eq!(
            distinct, all_macs,
            "{}: nodes are not exactly the MACs that asked",
            ep.name
        );
        assert_eq!(nodes.len(), in_etcd.len(), "{} and etcd disagree", ep.name);
    }
    // The real clients got the addresses their new nodes have.
    let (nodes, _) = read_all(&a);
    let ip_of: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| Some((n["mac"].as_str()?, n["ip"].as_str()?)))
        .collect();
    for (mac, lease) in udhcpc_macs.iter().zip(&leases) {
        let lease = lease
            .as_ref()
            .unwrap_or_else(|| panic!("udhcpc {mac} got no lease\n{}", c.logs()));
        assert_eq!(
            lease.split_whitespace().next(),
            Some(ip_of[mac.as_str()]),
            "{mac}: {lease}"
        );
    }
    // Each MAC was enrolled by exactly one head (its audit line), and both heads enrolled some.
    let created: Vec<Vec<String>> = c
        .heads
        .iter()
        .map(|h| {
            h.log()
                .lines()
                .filter_map(|l| l.split("for new MAC ").nth(1))
                .filter_map(|r| r.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .collect();
    let mut by_mac: BTreeMap<&str, usize> = BTreeMap::new();
    for m in created.iter().flatten() {
        *by_mac.entry(m).or_default() += 1;
    }
    // The other head's attempts for the same MACs lost to the database's uniqueness check.
    let lost: Vec<String> = c
        .heads
        .iter()
        .flat_map(|h| {
            h.log()
                .lines()
                .filter(|l| l.contains("already created: "))
                .map(|l| {
                    l.split("already created: ")
                        .nth(1)
                        .unwrap_or("")
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let lost_mac = lost
        .iter()
        .filter(|l| l.contains("is already used"))
        .count();
    assert!(
        lost_mac > 0,
        "no head ever lost an enrollment race: the test did not make both heads try"
    );
    let twice: Vec<_> = by_mac.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "enrolled more than once: {twice:?}");
    assert_eq!(by_mac.len(), all_macs.len(), "{by_mac:?}");
    eprintln!(
        "enrollment: {} distinct MACs asked both heads; {} nodes, each MAC exactly once, unique \
         indexes, IPs and names; head-a enrolled {}, head-b {}; {lost_mac} attempts lost to the \
         MAC already being a node, {} to a concurrent change (retried by the client)",
        all_macs.len(),
        nodes.len(),
        created[0].len(),
        created[1].len(),
        lost.len() - lost_mac
    );
}

// ---------------------------------------------------------------------------------------
// Heads starting while etcd is degraded (one member down, or electing a leader)
// ---------------------------------------------------------------------------------------

/// One follower down: a head given all three endpoints starts and takes writes.
#[test]
fn a_head_starts_with_one_etcd_member_down() {
    let _g = serial();
    let mut c = Cluster::new("10.79.0", API_ONLY);
    c.add_head();
    let l = c.leader().expect("a leader");
    let f = (l + 1) % c.etcd.len();
    c.etcd[f].kill9();
    let t = Instant::now();
    c.add_head();
    eprintln!(
        "head-b started in {:.1} s with etcd {} down",
        t.elapsed().as_secs_f64(),
        c.etcd[f].name
    );
    let b = c.eps[1].clone();
    for i in 0..10 {
        let o = b.wulf(&["node", "create", &format!("mac=02:7c:00:00:00:{i:02x}")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// The etcd leader killed, and a head started right away: it waits for the election (its
/// registration is retried) instead of giving up.
#[test]
fn a_head_starts_while_etcd_elects_a_leader() {
    let _g = serial();
    let mut c = Cluster::new("10.79.0", API_ONLY);
    c.add_head();
    let l = c.leader().expect("a leader");
    c.etcd[l].kill9();
    let t = Instant::now();
    c.add_head();
    eprintln!(
        "head-b started in {:.1} s while etcd elected a new leader",
        t.elapsed().as_secs_f64()
    );
    let up = c.eps[1].json(&["head", "ls"]).unwrap();
    assert_eq!(
        up.as_array()
            .unwrap()
            .iter()
            .filter(|h| h["state"] == "up")
            .count(),
        2,
        "{up}"
    );
}

//! Head registration with the real `wulfd`: `wulf head ls` shows heads up and down, a down
//! head can be removed, an up one cannot, and a head restarted right after a crash comes
//! back under its name.

mod head;

use head::{write, Head};
use serde_json::Value;

#[test]
fn heads_up_down_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = write(dir.path(), "alpha.toml", b"head_name = \"alpha\"\n");
    let beta = write(dir.path(), "beta.toml", b"head_name = \"beta\"\n");
    let mut h = Head::start_with(&["--config", alpha.to_str().unwrap()]);
    assert_eq!(h.head_states(), [("alpha".into(), "up".into())]);
    let list = h.json(&["head", "ls"]);
    let urls: Vec<&str> = list[0]["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(urls, [format!("https://127.0.0.1:{}", h.port)]);
    let table = h.ok(&["head", "ls"]);
    assert!(
        table.contains("HEAD") && table.contains("alpha") && table.contains("seconds ago"),
        "{table}"
    );
    // An up head cannot be removed.
    let e = h.fails(1, &["head", "-i", "alpha", "delete"]);
    assert!(e.contains("is up"), "{e}");

    // kill -9 and start again at once: the head takes its name back.
    h.kill9();
    h.spawn();
    assert_eq!(h.head_states(), [("alpha".into(), "up".into())]);

    // Stop it and start a head of another name on the same data: alpha is down.
    h.stop();
    h.extra_args = vec!["--config".into(), beta.to_str().unwrap().into()];
    h.spawn();
    assert_eq!(
        h.head_states(),
        [
            ("alpha".into(), "down".into()),
            ("beta".into(), "up".into())
        ]
    );
    let out = h.ok(&["head", "-i", "alpha", "delete"]);
    assert_eq!(out.trim(), "Deleted head alpha");
    assert_eq!(h.head_states(), [("beta".into(), "up".into())]);
    let e = h.fails(1, &["head", "-i", "nosuch", "delete"]);
    assert!(e.contains("no head named 'nosuch'"), "{e}");
    h.fails(2, &["head", "delete"]);
    let v: Value = h.json(&["head", "-i", "beta", "ls"]);
    assert_eq!(v.as_array().unwrap().len(), 1);
}

/// `wulf cluster db` on the embedded store: one member, the database file, and maintenance
/// that has nothing to defragment.
#[test]
fn cluster_db_on_the_embedded_store() {
    let h = head::Head::start();
    h.ok(&["node", "create", "--count", "20"]);
    let st: Value = h.json(&["cluster", "db"]);
    assert_eq!(st["backend"], "embedded");
    assert!(st["revision"].as_i64().unwrap() > 0);
    let m = &st["members"][0];
    assert!(
        m["endpoint"].as_str().unwrap().ends_with("wulf.redb"),
        "{m}"
    );
    let (size, used) = (
        m["db_size"].as_u64().unwrap(),
        m["db_in_use"].as_u64().unwrap(),
    );
    assert!(size > 0 && used > 0 && used <= size, "{m}");
    assert_eq!(st["alarms"], serde_json::json!([]));
    let done = h.ok(&["cluster", "db", "--recover"]);
    assert!(done.contains("compacted history up to revision"), "{done}");
    assert!(done.contains("nothing to defragment"), "{done}");
    assert!(done.contains("no alarm raised"), "{done}");
    let rev: i64 = done
        .split("compacted history up to revision ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    let st: Value = h.json(&["cluster", "db"]);
    assert_eq!(st["compacted_revision"], rev);
    assert_eq!(st["maintenance"]["compacted"][0], rev, "{st}");
    // The head keeps working after its history is compacted away.
    h.ok(&["node", "create", "--count", "1"]);
}

/// Bad `head` requests (no such head, a head that is up, a list with one of those in it, no
/// names, wrong methods) are refused with a clear error and change nothing: the same head
/// list, the same objects revision, and the same records and liveness keys in etcd.
#[test]
fn bad_head_requests_change_nothing() {
    let etcd = head::Etcd::start();
    let config = |name: &str| {
        format!("head_name = \"{name}\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n")
    };
    let store = etcd.store();
    let mut alpha = Head::start_configured(None, &config("alpha"), &["--store", &store]);
    alpha.stop();
    let h = Head::start_configured(None, &config("beta"), &["--store", &store]);
    assert_eq!(
        h.head_states(),
        [
            ("alpha".into(), "down".into()),
            ("beta".into(), "up".into())
        ]
    );
    let keys = || {
        let mut k = etcd.range(wulfd::heads::HEADS_PREFIX);
        k.extend(etcd.range(wulfd::heads::ALIVE_PREFIX));
        k
    };
    let (list, rev, stored) = (h.json(&["head", "ls"]), h.revision(), keys());
    assert_eq!(stored.len(), 3, "two records and beta's liveness key");
    let unchanged = |what: &str| {
        assert_eq!(
            h.json(&["head", "ls"]),
            list,
            "{what}: the head list changed"
        );
        assert_eq!(h.revision(), rev, "{what}: the objects changed");
        assert_eq!(keys(), stored, "{what}: the head records changed");
    };

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["head", "-i", "nosuch", "delete"],
            1,
            "no head named 'nosuch'",
        ),
        (&["head", "-i", "beta", "delete"], 1, "head 'beta' is up"),
        // One good name beside a bad one: nothing is removed, not even the good one.
        (
            &["head", "-i", "alpha,nosuch", "delete"],
            1,
            "no head named 'nosuch'",
        ),
        (
            &["head", "-i", "alpha", "-i", "beta", "delete"],
            1,
            "head 'beta' is up",
        ),
        (&["head", "delete"], 2, "say which heads"),
        (&["head", "-i", ",", "delete"], 2, "say which heads"),
        (&["head", "-i", "alpha", "frobnicate"], 2, "frobnicate"),
    ];
    for (args, code, msg) in cases {
        let err = h.fails(*code, args);
        assert!(
            err.contains(msg),
            "wulf {args:?}: expected '{msg}' in:\n{err}"
        );
        unchanged(&format!("wulf {args:?}"));
    }
    let url = format!("{}/api/v1/head", h.url());
    let auth = h.auth();
    for (method, query, code, msg) in [
        ("DELETE", "", 400, "say which heads"),
        ("DELETE", "?ids=,,", 400, "say which heads"),
        (
            "DELETE",
            "?ids=alpha,../alive/beta",
            404,
            "no head named '../alive/beta'",
        ),
        ("DELETE", "?ids=beta,alpha", 409, "head 'beta' is up"),
        // Methods the route does not have: refused by the access table before any handler.
        ("POST", "", 403, "this route has no access rule"),
        ("PATCH", "?ids=alpha", 403, "this route has no access rule"),
    ] {
        let (got, body) = h.curl(&["-X", method, "-H", &auth, &format!("{url}{query}")]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, code, "{method} {query}: {body}");
        assert!(
            body.contains(msg),
            "{method} {query}: expected '{msg}' in {body}"
        );
        unchanged(&format!("{method} /api/v1/head{query}"));
    }
    // Without a token: refused before anything is looked at.
    let (got, _) = h.curl(&["-X", "DELETE", &format!("{url}?ids=alpha")]);
    assert_eq!(got, 401);
    unchanged("DELETE without a token");

    // The good request still works: alpha goes, beta stays.
    assert_eq!(
        h.ok(&["head", "-i", "alpha", "delete"]).trim(),
        "Deleted head alpha"
    );
    assert_eq!(h.head_states(), [("beta".into(), "up".into())]);
}

//! Integration tests: the real `wulfd` driven by the real `wulf` (and `curl`).

mod head;

use head::{names, write, Head};
use serde_json::{json, Value};

#[test]
fn quick_start_flow() {
    let h = Head::start();
    let info = h.json(&["info"]);
    assert_eq!(info["store"], "embedded");
    // A new cluster has its settings, default group and default pool.
    let cluster = h.json(&["cluster", "ls"]);
    assert_eq!(cluster[0]["default_group"], "DefaultAttribs");
    assert_eq!(names(&h.json(&["attrib", "ls"])), ["DefaultAttribs"]);
    assert_eq!(h.json(&["pool", "ls"])[0]["pattern"], "n{}");

    let out = h.ok(&["node", "create", "--count", "4"]);
    assert_eq!(out.trim(), "Created node n[0-3]");
    assert_eq!(h.ok(&["node", "ls"]), "Nodes\n  n0\n  n1\n  n2\n  n3\n");
    let table = h.ok(&["node", "ls", "-t"]);
    assert!(
        table.contains("NAME") && table.contains("INDEX") && table.lines().count() == 5,
        "{table}"
    );
    h.ok(&["cluster", "update", "accept_new_nodes=yes"]);
    assert_eq!(h.json(&["cluster", "ls"])[0]["accept_new_nodes"], "append");
}

#[test]
fn names_ips_and_every_way_to_name_a_node() {
    let h = Head::start();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.54.0.10",
        "ip_count=500",
        "mask_bits=16",
        "router_ip=10.54.0.1",
    ]);
    h.ok(&[
        "pool",
        "create",
        "name=gpu",
        "pattern=gpu{:03d}",
        "first_index=100",
    ]);
    h.ok(&["node", "create", "mac=52:54:00:00:00:01"]);
    h.ok(&["node", "create", "--count", "3", "index=100"]);
    h.ok(&["node", "create", "name=login1", "mac=52-54-00-00-00-99"]);
    let all = h.json(&["node", "ls"]);
    assert_eq!(names(&all), ["n0", "login1", "gpu000", "gpu001", "gpu002"]);
    assert_eq!(all[0]["ip"], "10.54.0.10");
    assert_eq!(all[2]["ip"], "10.54.0.110");
    assert_eq!(all[1]["mac"], "52:54:00:00:00:99");

    let pick = |sel: &str| names(&h.json(&["node", "-i", sel, "ls"]));
    assert_eq!(pick("gpu[000-001]"), ["gpu000", "gpu001"]);
    assert_eq!(pick("52:54:00:00:00:01"), ["n0"]);
    assert_eq!(pick("5254.0000.0099"), ["login1"]);
    assert_eq!(pick("10.54.0.111"), ["gpu001"]);
    assert_eq!(pick("102"), ["gpu002"]);
    let uid = all[3]["uid"].as_str().unwrap().to_string();
    assert_eq!(pick(&uid), ["gpu001"]);
    assert_eq!(pick(&uid[..6]), ["gpu001"]);
    assert_eq!(pick("n0,gpu002"), ["n0", "gpu002"]);
    // -i repeats, and ls takes names too.
    assert_eq!(
        names(&h.json(&["node", "-i", "n0", "-i", "login1", "ls"])),
        ["n0", "login1"]
    );
    assert_eq!(names(&h.json(&["node", "ls", "gpu000"])), ["gpu000"]);

    h.ok(&["attrib", "create", "name=gpus"]);
    h.ok(&["node", "-i", "gpu[000-002]", "join", "gpus"]);
    assert_eq!(pick("%gpus"), ["gpu000", "gpu001", "gpu002"]);
    h.ok(&["node", "-i", "gpu001", "leave", "gpus"]);
    assert_eq!(pick("%gpus"), ["gpu000", "gpu002"]);

    // Missing names are reported as a hostlist, exit 1.
    let err = h.fails(1, &["node", "-i", "gpu[000-009]", "ls"]);
    assert!(err.contains("gpu[003-009]"), "{err}");

    // Index changes move derived names and IPs; hand-set names stay.
    h.ok(&["node", "-i", "n0", "update", "index=7"]);
    let n7 = h.json(&["node", "-i", "n7", "ls"]);
    assert_eq!(n7[0]["ip"], "10.54.0.17");
    h.ok(&["node", "-i", "login1", "update", "index=9"]);
    assert_eq!(h.json(&["node", "-i", "login1", "ls"])[0]["index"], 9);
    // Clearing the IP derives it again; setting one keeps it.
    h.ok(&["node", "-i", "login1", "update", "ip=10.54.1.1"]);
    assert_eq!(
        h.json(&["node", "-i", "login1", "ls"])[0]["ip"],
        "10.54.1.1"
    );
    h.ok(&["node", "-i", "login1", "update", "ip="]);
    assert_eq!(
        h.json(&["node", "-i", "login1", "ls"])[0]["ip"],
        "10.54.0.19"
    );
}

#[test]
fn effective_attributes_and_their_layers() {
    let h = Head::start();
    h.ok(&["node", "create", "--count", "2"]);
    h.ok(&[
        "attrib",
        "-i",
        "DefaultAttribs",
        "set",
        "_status_secs=10",
        "rack=none",
        "os=rocky",
    ]);
    h.ok(&["attrib", "create", "name=r1"]);
    h.ok(&["attrib", "create", "name=busy"]);
    h.ok(&["attrib", "-i", "r1", "set", "rack=r1", "_busy=no"]);
    h.ok(&["attrib", "-i", "busy", "set", "_busy=yes"]);
    h.ok(&["node", "-i", "n0", "join", "r1,busy"]);
    h.ok(&["node", "-i", "n0", "set", "os=alma"]);

    let v = h.json(&["node", "-i", "n0", "ls", "-L"]);
    let eff = &v[0]["effective_attributes"];
    assert_eq!(eff["os"]["value"], "alma");
    assert_eq!(eff["os"]["source"], json!({"from": "node"}));
    assert_eq!(eff["rack"]["value"], "r1");
    assert_eq!(
        eff["rack"]["source"],
        json!({"from": "group", "name": "r1"})
    );
    assert_eq!(eff["_busy"]["value"], "yes", "later group wins");
    assert_eq!(
        eff["_status_secs"]["source"],
        json!({"from": "default", "name": "DefaultAttribs"})
    );
    let text = h.ok(&["node", "-i", "n0", "ls", "-l"]);
    assert!(
        text.contains("(group busy)")
            && text.contains("(node)")
            && text.contains("(default group DefaultAttribs)"),
        "{text}"
    );
    // -l shows the main fields, -L every field.
    assert!(
        text.contains("groups: r1,busy") && !text.contains("uid:"),
        "{text}"
    );
    let full = h.ok(&["node", "-i", "n0", "ls", "-L"]);
    assert!(
        full.contains("uid:") && full.contains("last_modified:") && full.contains("(group busy)"),
        "{full}"
    );

    // n1 only has the defaults; clear removes.
    let v = h.json(&["node", "-i", "n1", "ls", "-L"]);
    assert_eq!(v[0]["effective_attributes"]["os"]["value"], "rocky");
    h.ok(&["node", "-i", "n0", "clear", "os"]);
    let v = h.json(&["node", "-i", "n0", "ls", "-L"]);
    assert_eq!(v[0]["effective_attributes"]["os"]["value"], "rocky");
    // key=@file reads the value from a file.
    let f = write(h.dir.path(), "motd", b"hello from a file\n");
    h.ok(&["node", "-i", "n1", "set", &format!("motd=@{}", f.display())]);
    assert_eq!(
        h.json(&["node", "-i", "n1", "ls"])[0]["attributes"]["motd"],
        "hello from a file"
    );
}

/// Every kind of bad input: a clear error naming what was wrong, exit 1 (2 for usage), and
/// nothing changed in the database.
#[test]
fn bad_input_changes_nothing() {
    let h = Head::start();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.9.0.10",
        "ip_count=100",
        "mask_bits=24",
    ]);
    h.ok(&["node", "create", "mac=52:54:00:00:00:01"]);
    h.ok(&["node", "create", "mac=52:54:00:00:00:02", "name=login"]);
    h.ok(&["attrib", "create", "name=g1"]);
    h.ok(&["image", "create", "name=img"]);
    let before = h.snapshot();
    let rev = h.revision();

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["node", "create", "mac=52:54:00:zz:00:03"],
            1,
            "mac: '52:54:00:zz:00:03' is not a MAC",
        ),
        (
            &["node", "create", "mac=52:54:00:00:00:01"],
            1,
            "MAC 52:54:00:00:00:01 is already used by node n0",
        ),
        (
            &["node", "create", "name=login"],
            1,
            "name 'login' is already used",
        ),
        (&["node", "create", "index=0"], 1, "index 0 is already used"),
        (
            &["node", "create", "ip=10.9.0.10"],
            1,
            "IP 10.9.0.10 is already used",
        ),
        (&["node", "create", "ip=10.9.0.999"], 1, "ip"),
        (
            &["node", "-i", "n0", "update", "mac=52:54:00:00:00:02"],
            1,
            "already used by node login",
        ),
        (
            &["node", "-i", "n0", "set", "_nonsense=1"],
            2,
            "unknown reserved attribute",
        ),
        (
            &["node", "-i", "n0", "set", "_status_secs=soon"],
            2,
            "_status_secs",
        ),
        (
            &["node", "-i", "n0", "join", "nosuchgroup"],
            1,
            "no attribute group named 'nosuchgroup'",
        ),
        (
            &["node", "-i", "n0", "set", "_boot_config=nosuchboot"],
            1,
            "no boot config named 'nosuchboot'",
        ),
        (
            &["boot", "create", "name=b1", "image=nosuchimage"],
            1,
            "no image named 'nosuchimage'",
        ),
        (
            &["node", "-i", "n[0-5]", "set", "a=b"],
            1,
            "no node matches n[1-5]",
        ),
        (&["node", "-i", "n[5-3]", "ls"], 1, "5-3"),
        (&["node", "-i", "n[0-1", "ls"], 1, "n[0-1"),
        (
            &["node", "create", "--count", "2", "mac=52:54:00:00:00:09"],
            2,
            "cannot be given to 2 nodes",
        ),
        (
            &["node", "create", "colour=red"],
            2,
            "has no field 'colour'",
        ),
        (&["node", "update", "type=x"], 2, "needs --ids"),
        (&["node", "-i", "n0", "frobnicate"], 2, "frobnicate"),
        (
            &[
                "net",
                "create",
                "name=bad",
                "first_ip=10.1.0.1",
                "ip_count=1000",
                "mask_bits=24",
            ],
            1,
            "ip_count",
        ),
        (&["attrib", "-i", "g1", "delete"], 1, ""),
        (
            &["pool", "create", "name=p", "pattern=nopattern"],
            1,
            "placeholder",
        ),
        (
            &["image", "-i", "img", "update", "name=nope name"],
            1,
            "name",
        ),
        (
            &["boot", "-i", "b1", "upload", "kernel", "/nonexistent"],
            2,
            "/nonexistent",
        ),
        (
            &["boot", "-i", "b1", "upload", "kernel", "/etc/hostname"],
            1,
            "no boot config matches b1",
        ),
        (
            &["image", "-i", "img", "upload", "kernel", "/etc/hostname"],
            2,
            "no file field 'kernel'",
        ),
    ];
    // Deleting a used group must be refused: make g1 used first (a real change), then re-snapshot.
    h.ok(&["node", "-i", "n0", "join", "g1"]);
    let before = {
        let _ = (before, rev);
        h.snapshot()
    };
    let rev = h.revision();
    for (args, code, msg) in cases {
        let err = h.fails(*code, args);
        assert!(
            err.contains(msg),
            "wulf {args:?}: expected '{msg}' in:\n{err}"
        );
        assert!(err.starts_with("wulf:") || err.contains("error:"), "{err}");
    }
    assert!(h
        .fails(1, &["attrib", "-i", "g1", "delete"])
        .contains("used by node n0"));
    assert_eq!(h.revision(), rev, "a failed request changed the database");
    assert_eq!(h.snapshot(), before, "a failed request changed an object");

    // Raw API: malformed JSON, wrong types, oversized bodies, unknown kinds.
    let auth = h.auth();
    let url = format!("{}/api/v1/node", h.url());
    let (code, body) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "--data-binary",
        "{\"name\": \"x\",",
        &url,
    ]);
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("malformed JSON"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (code, body) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "--data-binary",
        "{\"name\": \"x\", \"index\": \"one\"}",
        &url,
    ]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, body) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "--data-binary",
        "[{\"mac\": \"52:54:00:00:00:77\"}, {\"mac\": \"52:54:00:00:00:77\"}]",
        &url,
    ]);
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    let (code, _) = h.curl(&["-H", &auth, &format!("{}/api/v1/nodes", h.url())]);
    assert_eq!(code, 404);
    let big = write(h.dir.path(), "big.json", &vec![b' '; 300 << 20]);
    let (code, body) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "--data-binary",
        &format!("@{}", big.display()),
        &url,
    ]);
    assert_eq!(code, 413, "{}", String::from_utf8_lossy(&body));
    let (code, body) = h.curl(&[
        "-X",
        "PATCH",
        "-H",
        &auth,
        "--data-binary",
        "{\"fields\": {\"uid\": \"x\"}}",
        &format!("{url}?ids=n0"),
    ]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h.revision(), rev);
    assert_eq!(h.snapshot(), before);
}

/// Failed uploads, by the CLI and straight to the API: each refused with a clear error, and
/// no file left in DATA/blobs (neither stored nor half-received), no object changed.
#[test]
fn failed_uploads_leave_no_blob() {
    let h = Head::start();
    let dir = h.dir.path();
    let content = write(dir, "root.tar.gz", b"the image as it was");
    let kernel = write(dir, "vmlinuz", b"a kernel");
    let fresh = write(dir, "fresh.bin", b"content no blob has yet");
    let bad_ks = write(dir, "bad.ks", b"network --hostname={{hostname}}\n");
    let unclosed_ks = write(dir, "unclosed.ks", b"network --hostname={{name\n");
    let not_text = write(dir, "binary.ks", &[0xff, 0xfe, 0x00, 0x80]);
    h.ok(&[
        "image",
        "create",
        "name=img",
        &format!("content=@{}", content.display()),
    ]);
    h.ok(&[
        "boot",
        "create",
        "name=b1",
        "image=img",
        &format!("kernel=@{}", kernel.display()),
    ]);
    h.ok(&["image", "create", "name=frozen", "frozen=true"]);
    let blobs = h.blob_listing();
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    let (before, rev) = (h.snapshot(), h.revision());
    let check = |what: &str| {
        assert_eq!(
            h.blob_listing(),
            blobs,
            "{what}: the blob directory changed"
        );
        assert_eq!(h.revision(), rev, "{what}: the database changed");
        assert_eq!(h.snapshot(), before, "{what}: an object changed");
    };

    let fresh_at = |field: &str| format!("{field}=@{}", fresh.display());
    let ks_at = |p: &std::path::Path| format!("kickstart=@{}", p.display());
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "image".into(),
                "-i".into(),
                "nosuch".into(),
                "upload".into(),
                "content".into(),
                fresh.display().to_string(),
            ],
            1,
            "no image matches nosuch",
        ),
        (
            vec![
                "image".into(),
                "-i".into(),
                "frozen".into(),
                "upload".into(),
                "content".into(),
                fresh.display().to_string(),
            ],
            1,
            "frozen",
        ),
        (
            vec![
                "boot".into(),
                "-i".into(),
                "b1".into(),
                "upload".into(),
                "kickstart".into(),
                bad_ks.display().to_string(),
            ],
            1,
            "unknown placeholder '{{hostname}}'",
        ),
        (
            vec![
                "boot".into(),
                "-i".into(),
                "b1".into(),
                "upload".into(),
                "kickstart".into(),
                not_text.display().to_string(),
            ],
            1,
            "not UTF-8",
        ),
        (
            vec![
                "boot".into(),
                "-i".into(),
                "b1".into(),
                "update".into(),
                "cmdline=quiet".into(),
                ks_at(&unclosed_ks),
            ],
            1,
            "without a closing",
        ),
        (
            vec![
                "image".into(),
                "create".into(),
                "name=bad name".into(),
                fresh_at("content"),
            ],
            1,
            "name",
        ),
        (
            vec![
                "image".into(),
                "create".into(),
                "name=img".into(),
                fresh_at("content"),
            ],
            1,
            "name 'img' is already used",
        ),
        (
            vec![
                "boot".into(),
                "create".into(),
                "name=b2".into(),
                "image=nosuch".into(),
                fresh_at("kernel"),
            ],
            1,
            "no image named 'nosuch'",
        ),
        (
            vec![
                "boot".into(),
                "-i".into(),
                "b1".into(),
                "update".into(),
                "image=nosuch".into(),
                fresh_at("kernel"),
            ],
            1,
            "no image named 'nosuch'",
        ),
        (
            vec![
                "image".into(),
                "create".into(),
                "name=img2".into(),
                "content=@/nonexistent".into(),
            ],
            2,
            "/nonexistent",
        ),
    ];
    for (args, code, msg) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = h.fails(*code, &args);
        assert!(
            err.contains(msg),
            "wulf {args:?}: expected '{msg}' in:\n{err}"
        );
        check(&format!("wulf {args:?}"));
    }

    // Straight to the API: a parent_sha256 that is no sha256 and one that is not the current
    // content, no such object, a kind or field without files, a kickstart that is not text,
    // an empty import file.
    let auth = h.auth();
    let api = |path: &str| format!("{}/api/v1/{path}", h.url());
    let body = format!("@{}", fresh.display());
    let put = |path: &str| {
        let (code, out) = h.curl(&["-X", "PUT", "-H", &auth, "--data-binary", &body, &api(path)]);
        (code, String::from_utf8_lossy(&out).into_owned())
    };
    let wrong_parent = "0".repeat(64);
    for (path, code, msg) in [
        (
            "image/img/files/content?parent_sha256=xyz".to_string(),
            400,
            "parent_sha256 'xyz' is not a sha256",
        ),
        (
            format!("image/img/files/content?parent_sha256={wrong_parent}"),
            409,
            "changed while this version was made",
        ),
        ("image/nosuch/files/content".into(), 404, "nosuch"),
        (
            "node/n0/files/kernel".into(),
            404,
            "has no file field 'kernel'",
        ),
        (
            "image/img/files/kernel".into(),
            404,
            "has no file field 'kernel'",
        ),
        ("bogus/img/files/content".into(), 404, "bogus"),
        ("boot/b1/files/kickstart".into(), 400, "not UTF-8"),
    ] {
        let (got, out) = if path.ends_with("kickstart") {
            let bin = format!("@{}", not_text.display());
            let (c, o) = h.curl(&["-X", "PUT", "-H", &auth, "--data-binary", &bin, &api(&path)]);
            (c, String::from_utf8_lossy(&o).into_owned())
        } else {
            put(&path)
        };
        assert_eq!(got, code, "PUT {path}: {out}");
        assert!(out.contains(msg), "PUT {path}: expected '{msg}' in {out}");
        check(&format!("PUT {path}"));
    }
    let (code, out) = h.curl(&[
        "-X",
        "PUT",
        "-H",
        &auth,
        "--data-binary",
        "",
        &api("cluster/import/files"),
    ]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&out));
    assert!(String::from_utf8_lossy(&out).contains("no file in the request body"));
    check("an empty import file");

    // A body cut off part way: curl sends 4 MiB at 1 MiB/s and gives up after 1.5 s. The head
    // removes what it had received.
    let big = write(dir, "big.bin", &vec![7u8; 4 << 20]);
    let big_body = format!("@{}", big.display());
    let (code, _) = h.curl(&[
        "-X",
        "PUT",
        "-H",
        &auth,
        "-H",
        "Expect:",
        "--limit-rate",
        "1M",
        "--max-time",
        "1.5",
        "--data-binary",
        &big_body,
        &api("image/img/files/content"),
    ]);
    assert_eq!(code, 0, "the upload was cut off before an answer");
    head::wait_for(
        "the cut-off upload's part file is removed",
        std::time::Duration::from_secs(10),
        || h.blob_listing() == blobs,
        || format!("{:?}", h.blob_listing()),
    );
    check("a cut-off upload");

    // A create whose file is refused after the object was made: the object is deleted again
    // (so the objects revision moves), and neither it nor the file is kept.
    let err = h.fails(1, &["boot", "create", "name=b3", &ks_at(&bad_ks)]);
    assert!(
        err.contains("kickstart of the new boot config 'b3' was refused; it was deleted again")
            && err.contains("unknown placeholder"),
        "{err}"
    );
    assert_eq!(h.blob_listing(), blobs, "a refused create kept a file");
    assert_eq!(h.snapshot(), before, "a refused create kept its object");

    // And a good upload still works.
    h.ok(&[
        "image",
        "-i",
        "img",
        "upload",
        "content",
        fresh.to_str().unwrap(),
    ]);
    assert_ne!(h.blob_listing(), blobs);
}

#[test]
fn authentication() {
    let h = Head::start();
    let url = format!("{}/api/v1/node", h.url());
    let (code, body) = h.curl(&[&url]);
    assert_eq!(code, 401);
    assert!(String::from_utf8_lossy(&body).contains("authentication required"));
    let (code, _) = h.curl(&["-H", "Authorization: Bearer 0000", &url]);
    assert_eq!(code, 401);
    let (code, _) = h.curl(&["-H", &h.auth(), &url]);
    assert_eq!(code, 200);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.data().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The CLI with a wrong token says what to do.
    let o = std::process::Command::new(head::wulf_bin())
        .args(["--url", &h.url(), "--token", "wrong", "node", "ls"])
        .arg("--ca")
        .arg(h.ca())
        .env("HOME", h.dir.path())
        .env_remove("WULF_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("WULF_TOKEN"));
    // No head at all: exit 1 with a hint.
    let o = std::process::Command::new(head::wulf_bin())
        .args([
            "--url",
            &format!("https://127.0.0.1:{}", head::free_port()),
            "--token",
            "x",
            "info",
        ])
        .arg("--ca")
        .arg(h.ca())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Is wulfd running?"));
}

#[test]
fn bulk_create_ten_thousand_nodes() {
    let h = Head::start();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.20.0.1",
        "ip_count=20000",
        "mask_bits=16",
    ]);
    let out = h.ok(&["node", "create", "--count", "10000"]);
    assert_eq!(out.trim(), "Created node n[0-9999]");
    let ls = h.ok(&["node", "ls"]);
    assert_eq!(ls.lines().count(), 10001);
    let v = h.json(&["node", "-i", "n9999", "ls"]);
    assert_eq!(v[0]["ip"], "10.20.39.16");
    // A file of MACs, one node each.
    let macs: String = (0..500)
        .map(|i| format!("52:54:01:00:{:02x}:{:02x}\n", i / 256, i % 256))
        .collect();
    let f = write(
        h.dir.path(),
        "macs.txt",
        format!("# new rack\n{macs}").as_bytes(),
    );
    let out = h.ok(&[
        "node",
        "create",
        "--macs",
        f.to_str().unwrap(),
        "type=compute",
    ]);
    assert_eq!(out.trim(), "Created node n[10000-10499]");
    assert_eq!(
        names(&h.json(&["node", "-i", "52:54:01:00:01:f3", "ls"])),
        ["n10499"]
    );
    // The same MACs again: all refused, nothing created.
    let err = h.fails(1, &["node", "create", "--macs", f.to_str().unwrap()]);
    assert!(err.contains("already used"), "{err}");
    assert_eq!(h.ok(&["node", "ls"]).lines().count(), 10501);
    // Delete them all.
    let out = h.ok(&["node", "--all", "delete"]);
    assert!(out.contains("n[0-10499]"), "{out}");
    assert_eq!(h.ok(&["node", "ls"]), "Nodes\n");
}

#[test]
fn files_upload_download_and_range() {
    let h = Head::start();
    let kernel: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let kpath = write(h.dir.path(), "vmlinuz", &kernel);
    let ipath = write(h.dir.path(), "initrd.img", b"initramfs bytes");
    h.ok(&["image", "create", "name=rocky9"]);
    h.ok(&[
        "boot",
        "create",
        "name=default",
        "image=rocky9",
        "cmdline=console=ttyS0",
        &format!("kernel=@{}", kpath.display()),
    ]);
    h.ok(&[
        "boot",
        "-i",
        "default",
        "upload",
        "initramfs",
        ipath.to_str().unwrap(),
    ]);
    let b = h.json(&["boot", "-i", "default", "ls"]);
    let sha = String::from_utf8(
        std::process::Command::new("sha256sum")
            .arg(&kpath)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        b[0]["kernel"]["sha256"],
        sha.split_whitespace().next().unwrap()
    );
    assert_eq!(b[0]["kernel"]["size"], 3_000_000);
    assert_eq!(b[0]["kernel"]["filename"], "vmlinuz");
    assert_eq!(b[0]["initramfs"]["size"], 15);

    let out = h.dir.path().join("k.out");
    h.ok(&[
        "boot",
        "-i",
        "default",
        "download",
        "kernel",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), kernel);

    // Range requests with curl.
    let url = format!("{}/api/v1/boot/default/files/kernel", h.url());
    let (code, body) = h.curl(&["-H", &h.auth(), "-r", "1000-1999", &url]);
    assert_eq!(code, 206);
    assert_eq!(body, &kernel[1000..2000]);
    let (code, _) = h.curl(&[
        "-H",
        &h.auth(),
        "-H",
        &format!(
            "If-None-Match: \"{}\"",
            b[0]["kernel"]["sha256"].as_str().unwrap()
        ),
        &url,
    ]);
    assert_eq!(code, 304);

    // Frozen boot configs refuse new files and changes until thawed.
    h.ok(&["boot", "-i", "default", "update", "frozen=true"]);
    let err = h.fails(
        1,
        &[
            "boot",
            "-i",
            "default",
            "upload",
            "initramfs",
            kpath.to_str().unwrap(),
        ],
    );
    assert!(err.contains("frozen"), "{err}");
    assert!(h
        .fails(1, &["boot", "-i", "default", "update", "cmdline=quiet"])
        .contains("frozen"));
    h.ok(&["boot", "-i", "default", "update", "frozen=false"]);
    h.ok(&["boot", "-i", "default", "update", "cmdline=quiet"]);
    // The image is used by the boot config: it cannot be deleted, then it can.
    assert!(h
        .fails(1, &["image", "-i", "rocky9", "delete"])
        .contains("used by boot default"));
    h.ok(&["boot", "-i", "default", "delete"]);
    h.ok(&["image", "-i", "rocky9", "delete"]);
}

/// `kill -9` right after acknowledged writes loses none of them.
#[test]
fn kill_nine_loses_nothing_acknowledged() {
    let mut h = Head::start();
    let mut acked = Vec::new();
    for i in 0..40 {
        let name = format!("g{i}");
        h.ok(&["attrib", "create", &format!("name={name}")]);
        acked.push(name);
        if i % 10 == 9 {
            h.ok(&["node", "create", "--count", "50"]);
        }
    }
    h.kill9();
    h.spawn();
    let groups = names(&h.json(&["attrib", "ls"]));
    for a in &acked {
        assert!(
            groups.contains(a),
            "{a} was acknowledged but is gone after kill -9"
        );
    }
    assert_eq!(h.json(&["node", "ls"]).as_array().unwrap().len(), 200);
    // And a clean restart keeps the same token and data.
    let token = h.token();
    h.stop();
    h.spawn();
    assert_eq!(h.token(), token);
    assert_eq!(h.json(&["node", "ls"]).as_array().unwrap().len(), 200);
}

#[test]
fn config_file_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", b"data_dri = \"/x\"\n");
    let o = std::process::Command::new(head::wulfd_bin())
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("data_dri"),
        "{err}"
    );

    let port = head::free_port();
    let data = dir.path().join("d");
    let cfg = write(
        dir.path(),
        "wulfd.toml",
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nlog = \"warn\"\n",
            data.display()
        )
        .as_bytes(),
    );
    let mut child = std::process::Command::new(head::wulfd_bin())
        .args(["--config", cfg.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !data.join("wulfd.url").exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = std::process::Command::new(head::wulf_bin())
        .args(["info", "--json"])
        .env("WULF_DATA_DIR", &data)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    for args in [
        &["--help"][..],
        &["node", "--help"],
        &["node", "create", "--help"],
        &["hostlist", "--help"],
    ] {
        let o = std::process::Command::new(head::wulf_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success() && !o.stdout.is_empty(), "{args:?}");
    }
    let o = std::process::Command::new(head::wulfd_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = std::process::Command::new(head::wulf_bin())
        .args(["hostlist", "compress", "n1", "n2", "n3", "n7"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "n[1-3,7]");
    let o = std::process::Command::new(head::wulf_bin())
        .args(["hostlist", "expand", "gpu[008-010]"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "gpu008\ngpu009\ngpu010\n"
    );
    let o = std::process::Command::new(head::wulf_bin())
        .args(["nodes", "ls"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn hosts_and_networks() {
    let h = Head::start();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.30.0.10",
        "ip_count=100",
        "mask_bits=16",
        "host_ranges=10.30.1.1-10.30.1.50",
        "dns_ips=10.30.0.1",
        "domain=cluster.local",
    ]);
    h.ok(&[
        "host",
        "create",
        "name=switch1",
        "ip=10.30.1.1",
        "mac=52:54:00:aa:00:01",
        "hostnames=sw1,sw1-mgmt",
    ]);
    h.ok(&["node", "create"]);
    // A node cannot take the switch's MAC or IP.
    assert!(h
        .fails(1, &["node", "create", "mac=52:54:00:aa:00:01"])
        .contains("host switch1"));
    assert!(h
        .fails(1, &["node", "-i", "n0", "update", "ip=10.30.1.1"])
        .contains("host switch1"));
    let v = h.json(&["host", "ls"]);
    assert_eq!(v[0]["hostnames"], json!(["sw1", "sw1-mgmt"]));
    let v: Value = h.json(&["net", "ls"]);
    assert_eq!(v[0]["host_ranges"], json!(["10.30.1.1-10.30.1.50"]));
}

/// A group, or a node, created with its reserved attributes in one command (one request, so
/// a bad one creates nothing); `update` takes them too.
#[test]
fn create_and_update_take_reserved_attributes() {
    let h = Head::start();
    h.ok(&["boot", "create", "name=b1"]);
    let out = h.ok(&["attrib", "create", "name=fast", "_status_secs=2"]);
    assert_eq!(out.trim(), "Created attribute group fast");
    let fast = &h.json(&["attrib", "-i", "fast", "ls"])[0];
    assert_eq!(fast["attributes"], json!({"_status_secs": "2"}));
    h.ok(&[
        "node",
        "create",
        "--count",
        "2",
        "_boot_config=b1",
        "groups=fast",
    ]);
    let nodes = h.json(&["node", "ls"]);
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["attributes"], json!({"_boot_config": "b1"}), "{n}");
        assert_eq!(n["groups"], json!(["fast"]), "{n}");
    }
    h.ok(&["node", "-i", "n0", "update", "description=gpu", "_busy=yes"]);
    let n0 = &h.json(&["node", "-i", "n0", "ls"])[0];
    assert_eq!(n0["description"], "gpu");
    assert_eq!(n0["attributes"]["_busy"], "yes");

    // Checked as `set` checks them; nothing is created or changed.
    let before = h.snapshot();
    for (args, code, want) in [
        (
            &["attrib", "create", "name=slow", "_status_secs=soon"][..],
            2,
            "_status_secs",
        ),
        (
            &["attrib", "create", "name=slow", "_nonsense=1"],
            2,
            "unknown reserved attribute",
        ),
        (
            &["attrib", "create", "name=slow", "_boot_config=nosuchboot"],
            1,
            "no boot config named 'nosuchboot'",
        ),
        (
            &["node", "-i", "n1", "update", "description=x", "_busy=maybe"],
            2,
            "_busy",
        ),
        (
            &["boot", "create", "name=b2", "_status_secs=2"],
            2,
            "has no field '_status_secs'",
        ),
    ] {
        let err = h.fails(code, args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(h.snapshot(), before, "a failed request changed an object");
    assert_eq!(
        names(&h.json(&["attrib", "ls"])),
        ["DefaultAttribs", "fast"]
    );
    assert_eq!(h.json(&["node", "-i", "n1", "ls"])[0]["description"], "");
}

/// `wulf OBJECT --help` lists that object's actions only; another object's is refused.
#[test]
fn each_object_help_lists_its_own_actions() {
    let help = |obj: &str| {
        let o = std::process::Command::new(head::wulf_bin())
            .args([obj, "--help"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{obj}");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        // The action names listed under "Commands:".
        let listed: Vec<String> = text
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter(|l| !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        (text, listed)
    };
    let (text, node) = help("node");
    for other in ["db", "hosts", "revoke", "backup", "upload"] {
        assert!(!node.iter().any(|a| a == other), "{other}: {text}");
    }
    assert!(!text.contains("only:"), "{text}");
    for own in ["ls", "create", "set", "join", "status", "exec", "waitfor"] {
        assert!(node.iter().any(|a| a == own), "{own}: {text}");
    }
    let (text, cluster) = help("cluster");
    for own in ["ls", "update", "db", "hosts"] {
        assert!(cluster.iter().any(|a| a == own), "{own}: {text}");
    }
    for other in ["create", "delete", "status", "set", "revoke"] {
        assert!(!cluster.iter().any(|a| a == other), "{other}: {text}");
    }
    let (_, admin) = help("admin");
    assert_eq!(
        admin,
        ["ls", "create", "update", "delete", "revoke", "help"]
    );
    let (_, boot) = help("boot");
    assert!(boot.iter().any(|a| a == "upload") && !boot.iter().any(|a| a == "set"));

    // Refused before anything is sent (no head here), with exit 2.
    for (args, want) in [
        (&["node", "-i", "n1", "db"][..], "db is a cluster action"),
        (&["node", "-i", "n1", "revoke"], "revoke is an admin action"),
        (
            &["boot", "-i", "b", "set", "_busy=1"],
            "set is a node and attrib action",
        ),
        (
            &["node", "-i", "n1", "reboot", "then", "hosts"],
            "hosts is a cluster action",
        ),
    ] {
        let o = std::process::Command::new(head::wulf_bin())
            .args(args)
            .env("WULF_URL", "https://127.0.0.1:1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

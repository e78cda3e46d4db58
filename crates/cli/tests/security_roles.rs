//! Every route × every role against a real head, with curl: allowed or 403 exactly as the
//! access table (wulfd's auth/table.rs) says; no token → 401; tampered, expired, revoked and
//! logged-out tokens → 401; a node credential on an account route → 403.

mod head;

use std::time::Duration;

use head::Head;
use serde_json::{json, Value};
use wulf_api::auth::Role;
use wulfd::auth::table::{Access, RULES};

/// An example of each route pattern that touches nothing when called with an empty body.
fn example(path: &str) -> String {
    path.replace("{kind}", "host")
        .replace("{id}", "nosuchhost")
        .replace("{field}", "kernel")
        .replace("{sha256}", &"0".repeat(64))
}

fn call(h: &Head, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let url = format!("{}{}", h.url(), example(path));
    let header = auth.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-X", method, "--max-time", "20"];
    if let Some(hd) = &header {
        args.extend(["-H", hd.as_str()]);
    }
    if matches!(method, "POST" | "PATCH" | "PUT") {
        args.extend(["-H", "Content-Type: application/json", "--data", "{}"]);
    }
    args.push(&url);
    let (code, body) = h.curl(&args);
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn post_json(h: &Head, path: &str, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let url = format!("{}{path}", h.url());
    let header = auth.map(|t| format!("Authorization: Bearer {t}"));
    let data = body.to_string();
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        &data,
    ];
    if let Some(hd) = &header {
        args.extend(["-H", hd.as_str()]);
    }
    args.push(&url);
    let (code, out) = h.curl(&args);
    (code, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

fn login(h: &Head, name: &str, password: &str) -> (String, String) {
    let (code, v) = post_json(
        h,
        "/api/v1/login",
        None,
        &json!({"name": name, "password": password}),
    );
    assert_eq!(code, 200, "login {name}: {v}");
    (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    )
}

fn make_accounts(h: &Head) {
    let token = h.token();
    for role in Role::ALL {
        let (code, v) = post_json(
            h,
            "/api/v1/admin",
            Some(&token),
            &json!({"name": format!("{role}1"), "role": role.as_str(), "password": format!("{role}-password")}),
        );
        assert_eq!(code, 201, "{v}");
        assert_eq!(v[0]["password_hash"], "********", "hash never shown: {v}");
    }
}

#[test]
fn every_route_and_role_as_the_table_says() {
    let h = Head::start();
    make_accounts(&h);
    let mut creds: Vec<(String, Role, String)> = Role::ALL
        .iter()
        .map(|r| {
            let (access, _) = login(&h, &format!("{r}1"), &format!("{r}-password"));
            (format!("{r}1"), *r, access)
        })
        .collect();
    creds.push(("bootstrap".into(), Role::Admin, h.token()));

    let mut checked = 0;
    for rule in RULES {
        // Logging out ends the session the rest of the loop uses: checked below.
        if rule.path == "/api/v1/logout" {
            continue;
        }
        let what = format!("{} {}", rule.method, rule.path);
        match rule.access {
            Access::Account(need) => {
                let (code, body) = call(&h, rule.method, rule.path, None);
                assert_eq!(code, 401, "{what} without a token: {body}");
                let (code, body) = call(
                    &h,
                    rule.method,
                    rule.path,
                    Some("node:0123456789abcdef0123456789abcdef:00"),
                );
                assert_eq!(code, 403, "{what} with a node credential: {body}");
                for (name, role, token) in &creds {
                    let (code, body) = call(&h, rule.method, rule.path, Some(token));
                    if *role >= need {
                        assert!(
                            code != 401 && code != 403 && code < 500,
                            "{what} as {name} ({role}) must be allowed, got {code}: {body}"
                        );
                    } else {
                        assert_eq!(
                            code, 403,
                            "{what} as {name} ({role}) must be refused: {body}"
                        );
                        assert!(
                            body.contains(need.as_str()),
                            "{what}: the refusal names the role needed: {body}"
                        );
                    }
                    checked += 1;
                }
            }
            Access::Node => {
                // An account token is not a node credential.
                for (name, _, token) in &creds {
                    let (code, body) = call(&h, rule.method, rule.path, Some(token));
                    assert!(
                        code == 401 || code == 403 || code == 400,
                        "{what} as {name} must not be accepted as a node, got {code}: {body}"
                    );
                }
            }
            Access::Public | Access::Firmware => {
                let (code, body) = call(&h, rule.method, rule.path, None);
                assert!(
                    code != 401 && code != 403 && code < 500,
                    "{what} needs no token, got {code}: {body}"
                );
            }
        }
    }
    assert!(checked >= 4 * 20, "only {checked} checks");

    // Logging out ends the session: its access and refresh tokens stop working.
    let (access, refresh) = login(&h, "viewer1", "viewer-password");
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&access)).0, 200);
    assert_eq!(
        post_json(&h, "/api/v1/logout", Some(&access), &json!({})).0,
        200
    );
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&access)).0, 401);
    let (code, v) = post_json(
        &h,
        "/api/v1/login/refresh",
        None,
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(code, 401, "{v}");
    // The bootstrap token has no session to end.
    assert_eq!(
        post_json(&h, "/api/v1/logout", Some(&h.token()), &json!({})).0,
        400
    );
}

#[test]
fn bad_tokens_and_revocation() {
    let h = Head::start();
    make_accounts(&h);
    let (access, refresh) = login(&h, "operator1", "operator-password");
    let (code, who) = {
        let (c, b) = call(&h, "GET", "/api/v1/whoami", Some(&access));
        (c, serde_json::from_str::<Value>(&b).unwrap())
    };
    assert_eq!(code, 200);
    assert_eq!(who["name"], "operator1");
    assert_eq!(who["role"], "operator");

    // Wrong password, unknown account: the same answer.
    let (c1, v1) = post_json(
        &h,
        "/api/v1/login",
        None,
        &json!({"name": "operator1", "password": "nope-nope"}),
    );
    let (c2, v2) = post_json(
        &h,
        "/api/v1/login",
        None,
        &json!({"name": "nobody", "password": "nope-nope"}),
    );
    assert_eq!((c1, c2), (401, 401));
    assert_eq!(v1, v2);

    // A tampered token: one payload character changed, the signature kept.
    let mut bytes = access.clone().into_bytes();
    let i = "wulf1.".len() + 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&tampered)).0, 401);
    // A refresh token is not an access token.
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&refresh)).0, 401);
    // Refreshing gives a working access token.
    let (code, v) = post_json(
        &h,
        "/api/v1/login/refresh",
        None,
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(code, 200, "{v}");
    let fresh = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&fresh)).0, 200);

    // Revoking the account ends all its tokens, refresh included.
    let (code, v) = post_json(
        &h,
        "/api/v1/admin/revoke?ids=operator1",
        Some(&h.token()),
        &json!({}),
    );
    assert_eq!(code, 200, "{v}");
    for t in [&access, &fresh] {
        let (code, body) = call(&h, "GET", "/api/v1/whoami", Some(t));
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("revoked"), "{body}");
    }
    let (code, _) = post_json(
        &h,
        "/api/v1/login/refresh",
        None,
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(code, 401);

    // A password change ends the tokens too; the new password logs in, the old does not.
    let (viewer, _) = login(&h, "viewer1", "viewer-password");
    let url = format!("{}/api/v1/admin?ids=viewer1", h.url());
    let auth = h.auth();
    let (code, body) = h.curl(&[
        "-X",
        "PATCH",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"fields": {"password": "a-new-password"}}"#,
        &url,
    ]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&viewer)).0, 401);
    assert_eq!(
        post_json(
            &h,
            "/api/v1/login",
            None,
            &json!({"name": "viewer1", "password": "viewer-password"})
        )
        .0,
        401
    );
    let _ = login(&h, "viewer1", "a-new-password");

    // A deleted account's tokens stop at once.
    let (admin, _) = login(&h, "admin1", "admin-password");
    let url = format!("{}/api/v1/admin?ids=admin1", h.url());
    let (code, _) = h.curl(&["-X", "DELETE", "-H", &auth, &url]);
    assert_eq!(code, 200);
    let (code, body) = call(&h, "GET", "/api/v1/whoami", Some(&admin));
    assert_eq!(code, 401, "{body}");

    // Nothing the head writes can be set from outside; a bad password changes nothing.
    let before = h.revision();
    for body in [
        json!({"name": "x1", "role": "admin", "password_hash": "$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA"}),
        json!({"name": "x1", "role": "admin", "token_generation": 5}),
        json!({"name": "x1", "role": "root", "password": "long-enough"}),
        json!({"name": "x1", "role": "admin", "password": "short"}),
    ] {
        let (code, v) = post_json(&h, "/api/v1/admin", Some(&h.token()), &body);
        assert_eq!(code, 400, "{body}: {v}");
    }
    assert_eq!(h.revision(), before, "refused writes changed nothing");
}

#[test]
fn access_tokens_expire() {
    let h = Head::start_configured(None, "[auth]\naccess_secs = 5\n", &[]);
    make_accounts(&h);
    let (access, refresh) = login(&h, "viewer1", "viewer-password");
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&access)).0, 200);
    std::thread::sleep(Duration::from_secs(6));
    let (code, body) = call(&h, "GET", "/api/v1/whoami", Some(&access));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    let (code, v) = post_json(
        &h,
        "/api/v1/login/refresh",
        None,
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(code, 200, "the refresh token lives longer: {v}");
}

/// Bad token requests of every kind, through the API and the CLI: malformed logins and
/// refreshes, tampered, revoked and expired tokens, enrollment-token requests with bad
/// fields, enrollments with wrong, expired and replayed tokens. Each gets a clear 4xx (exit
/// 1 or 2), and none changes the token state: the sessions, standalone enrollment tokens,
/// node credentials and secrets in etcd, the accounts, the objects, and the boot-script
/// token a node has not used yet.
#[test]
fn bad_tokens_change_no_token_state() {
    let etcd = head::Etcd::start();
    let h = Head::start_configured(
        None,
        "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n",
        &["--store", &etcd.store()],
    );
    make_accounts(&h);
    let (access, refresh) = login(&h, "operator1", "operator-password");
    let (v_access, v_refresh) = login(&h, "viewer1", "viewer-password");
    let (code, v) = post_json(
        &h,
        "/api/v1/admin/revoke?ids=viewer1",
        Some(&h.token()),
        &json!({}),
    );
    assert_eq!(code, 200, "{v}");
    let token_of = |v: Value| v["enroll_token"]["token"].as_str().unwrap().to_string();
    let s0_token = token_of(h.json(&["node", "create", "name=s0", "--enroll-token"]));
    let s1_token = token_of(h.json(&[
        "node",
        "create",
        "name=s1",
        "--enroll-token",
        "--enroll-token-ttl",
        "1",
    ]));
    h.ok(&[
        "node",
        "create",
        "name=n0",
        "mac=52:54:00:14:00:01",
        "type=simulated",
    ]);
    let uid = |name: &str| {
        h.json(&["node", "-i", name, "ls"])[0]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (s0, s1, n0) = (uid("s0"), uid("s1"), uid("n0"));
    // n0's boot script holds a one-time enrollment token it has not used yet.
    let boot = h.script_params("52:54:00:14:00:01");
    std::thread::sleep(Duration::from_millis(2100)); // s1's token has expired
    let session_file = h.dir.path().join(".config/wulf/session.json");
    assert!(!session_file.exists());

    let state = || {
        let mut keys = Vec::new();
        for prefix in [
            "/wulf/session/",
            "/wulf/enroll-token/",
            "/wulf/node-cred/",
            "/wulf/secret/",
        ] {
            keys.push(etcd.range(prefix));
        }
        (
            keys,
            h.json(&["admin", "ls", "-L"]),
            h.snapshot(),
            h.revision(),
        )
    };
    let before = state();
    assert_eq!(before.0[0].len(), 2, "two sessions: {:?}", before.0[0]);
    assert_eq!(before.0[1].len(), 2, "two standalone tokens");
    let unchanged = |what: &str| {
        let now = state();
        assert!(now == before, "{what} changed the token state");
        assert!(!session_file.exists(), "{what} wrote a session file");
    };

    let tampered = {
        let mut b = refresh.clone().into_bytes();
        let i = "wulf1.".len() + 5;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let raw = |path: &str, auth: Option<&str>, body: &str| h.post_json(path, auth, body);
    let admin = h.token();
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "/api/v1/login",
            None,
            "{\"name\": ".into(),
            400,
            "malformed JSON in request body",
        ),
        (
            "/api/v1/login",
            None,
            json!({"name": 5, "password": "x"}).to_string(),
            400,
            "malformed login request",
        ),
        (
            "/api/v1/login",
            None,
            json!({"name": "operator1"}).to_string(),
            400,
            "password",
        ),
        (
            "/api/v1/login",
            None,
            json!({"name": "operator1", "password": "wrong-password"}).to_string(),
            401,
            "wrong account name or password",
        ),
        (
            "/api/v1/login",
            None,
            json!({"name": "nobody", "password": "wrong-password"}).to_string(),
            401,
            "wrong account name or password",
        ),
        (
            "/api/v1/login/refresh",
            None,
            json!({"refresh_token": "wulf1.garbage"}).to_string(),
            401,
            "log in again",
        ),
        (
            "/api/v1/login/refresh",
            None,
            json!({"refresh_token": 7}).to_string(),
            400,
            "malformed refresh request",
        ),
        (
            "/api/v1/login/refresh",
            None,
            json!({"refresh_token": tampered}).to_string(),
            401,
            "log in again",
        ),
        (
            "/api/v1/login/refresh",
            None,
            json!({"refresh_token": access}).to_string(),
            401,
            "not a refresh token",
        ),
        (
            "/api/v1/login/refresh",
            None,
            json!({"refresh_token": v_refresh}).to_string(),
            401,
            "revoked",
        ),
        (
            "/api/v1/logout",
            Some(&admin),
            "{}".into(),
            400,
            "no session",
        ),
        (
            "/api/v1/logout",
            Some(&v_access),
            "{}".into(),
            401,
            "revoked",
        ),
        (
            "/api/v1/logout",
            Some("wulf1.garbage"),
            "{}".into(),
            401,
            "",
        ),
        (
            "/api/v1/admin/revoke?ids=nosuch",
            Some(&admin),
            "{}".into(),
            404,
            "nosuch",
        ),
        (
            "/api/v1/admin/revoke",
            Some(&admin),
            "{}".into(),
            400,
            "ids",
        ),
        (
            "/api/v1/admin/revoke?ids=viewer1",
            Some(&access),
            "{}".into(),
            403,
            "",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            "{\"node\": ".into(),
            400,
            "malformed JSON in request body",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            json!({"node": "s0", "ttl_secs": 0}).to_string(),
            400,
            "ttl_secs 0 is out of range",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            json!({"node": "s0", "ttl_secs": 99_999_999}).to_string(),
            400,
            "out of range",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            json!({"node": "s0", "ttl_secs": "1h"}).to_string(),
            400,
            "malformed request",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            json!({"node": "s0", "owner": "x"}).to_string(),
            400,
            "unknown field",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            json!({"node": "nosuch"}).to_string(),
            404,
            "no node nosuch",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&admin),
            json!({"node": "n0"}).to_string(),
            400,
            "enrollment tokens are for nodes of type standalone",
        ),
        (
            "/api/v1/node/enroll-token",
            Some(&access),
            json!({"node": "s0"}).to_string(),
            403,
            "",
        ),
        (
            "/api/v1/node/enroll",
            None,
            "{\"node\": ".into(),
            400,
            "malformed enrollment request",
        ),
        (
            "/api/v1/node/enroll",
            None,
            json!({"node": s0, "token": format!("{s0}.{}", "0".repeat(64))}).to_string(),
            403,
            "not this node's",
        ),
        (
            "/api/v1/node/enroll",
            None,
            json!({"node": s0, "token": "short"}).to_string(),
            403,
            "not this node's",
        ),
        (
            "/api/v1/node/enroll",
            None,
            json!({"node": s1, "token": s1_token}).to_string(),
            403,
            "the enrollment token expired",
        ),
        (
            "/api/v1/node/enroll",
            None,
            json!({"node": s1, "token": s0_token}).to_string(),
            403,
            "not this node's",
        ),
        (
            "/api/v1/node/enroll",
            None,
            json!({"node": "nosuch", "token": "0"}).to_string(),
            403,
            "no node nosuch",
        ),
        (
            "/api/v1/node/enroll",
            None,
            json!({"node": n0, "token": "0".repeat(32)}).to_string(),
            403,
            "enrollment of n0 refused",
        ),
    ];
    for (path, auth, body, code, msg) in &cases {
        let (got, out) = raw(path, *auth, body);
        assert_eq!(got, *code, "POST {path} {body}: {out}");
        assert!(
            out.contains(msg),
            "POST {path} {body}: expected '{msg}' in {out}"
        );
        unchanged(&format!("POST {path} {body}"));
    }
    // Tokens that are no tokens, on a read.
    for (t, code) in [
        ("wulf1.garbage", 401),
        (tampered.as_str(), 401),
        (v_access.as_str(), 401),
        ("", 401),
        ("node:x:y", 403),
    ] {
        let (got, out) = call(&h, "GET", "/api/v1/whoami", Some(t));
        assert_eq!(got, code, "{t}: {out}");
    }
    unchanged("whoami with bad tokens");

    // The CLI: a wrong password, a bad token, bad enrollment-token requests.
    let err = {
        let o = h.wulf_stdin(
            &["login", "operator1", "--password-stdin"],
            Some("wrong-password\n"),
        );
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(err.contains("wrong account name or password"), "{err}");
    unchanged("wulf login with a wrong password");
    let cli: &[(&[&str], i32, &str)] = &[
        (&["--token", "wulf1.garbage", "node", "ls"], 1, "WULF_TOKEN"),
        (
            &["node", "-i", "nosuch", "enroll-token"],
            1,
            "no node nosuch",
        ),
        (&["node", "-i", "n0", "enroll-token"], 1, "type standalone"),
        (
            &["node", "-i", "s0", "enroll-token", "--ttl", "0"],
            2,
            "not a duration",
        ),
        (
            &["node", "-i", "s0", "enroll-token", "--ttl", "40d"],
            1,
            "out of range",
        ),
        (
            &["node", "-i", "s0,s1", "enroll-token"],
            2,
            "exactly one node",
        ),
        (
            &[
                "node",
                "create",
                "name=s9",
                "type=compute",
                "--enroll-token",
            ],
            2,
            "not compute",
        ),
        (&["admin", "-i", "nosuch", "revoke"], 1, "nosuch"),
        (&["node", "-i", "s0", "revoke"], 2, "revoke"),
    ];
    for (args, code, msg) in cli {
        let err = h.fails(*code, args);
        assert!(
            err.contains(msg),
            "wulf {args:?}: expected '{msg}' in:\n{err}"
        );
        unchanged(&format!("wulf {args:?}"));
    }

    // The good tokens still work, the unused boot-script token among them.
    assert_eq!(call(&h, "GET", "/api/v1/whoami", Some(&access)).0, 200);
    let (code, body) = h.enroll_with(&n0, &boot["enroll"]);
    assert_eq!(code, 200, "n0's own token: {body}");
    let (code, body) = h.enroll_with(&s0, &s0_token);
    assert_eq!(code, 200, "s0's own token: {body}");
    // Used tokens replayed: refused, and nothing changes.
    let used = state();
    for (node, token) in [(&n0, &boot["enroll"]), (&s0, &s0_token)] {
        let (code, body) = h.enroll_with(node, token);
        assert_eq!(code, 403, "a replayed token: {body}");
        assert!(state() == used, "a replayed token changed the token state");
    }
}

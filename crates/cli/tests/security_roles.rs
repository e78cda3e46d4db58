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

//! Admin accounts, roles and sessions through the real `wulf` against a real head: accounts
//! made with `wulf admin`, people logged in with `wulf login` from their own home directory
//! (never reaching the head's bootstrap token), what each role may do, logout, revocation,
//! access tokens renewed behind the user's back, passwords refused on the command line.

mod head;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use head::{wulf_bin, Head};
use serde_json::Value;

/// Every `wulf` run here ends within this (coreutils `timeout` kills it).
const LIMIT_SECS: &str = "60";

/// Someone on another machine: their own HOME and config, and a data directory with no token
/// in it, so the CLI can only use what `wulf login` saved.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("empty-data")).unwrap();
        std::fs::write(home.path().join("wulf.toml"), "").unwrap();
        User { home }
    }

    fn session_file(&self) -> PathBuf {
        self.home.path().join(".config/wulf/session.json")
    }

    fn session(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.session_file()).unwrap()).unwrap()
    }
}

/// Run `wulf` as `user` (None: the admin on the head, who has the bootstrap token).
fn run(h: &Head, user: Option<&User>, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", LIMIT_SECS]).arg(wulf_bin()).args(args);
    cmd.env_remove("WULF_TOKEN")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("WULF_INSECURE")
        .env("WULF_URL", h.url())
        .env("WULF_CA", h.data().join("tls/ca.pem"));
    match user {
        Some(u) => {
            cmd.env("HOME", u.home.path())
                .env("WULF_DATA_DIR", u.home.path().join("empty-data"))
                .env("WULF_CONFIG", u.home.path().join("wulf.toml"))
                .current_dir(u.home.path());
        }
        None => {
            cmd.env("HOME", h.dir.path())
                .env("WULF_DATA_DIR", h.data())
                .env_remove("WULF_CONFIG");
        }
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(124),
        "wulf {args:?} did not finish in {LIMIT_SECS} s"
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(h: &Head, user: Option<&User>, args: &[&str], stdin: Option<&str>) -> String {
    let o = run(h, user, args, stdin);
    assert_eq!(o.status.code(), Some(0), "wulf {args:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Run expecting exit `code`; returns stderr.
fn fails(h: &Head, user: Option<&User>, code: i32, args: &[&str], stdin: Option<&str>) -> String {
    let o = run(h, user, args, stdin);
    assert_eq!(o.status.code(), Some(code), "wulf {args:?}: {}", text(&o));
    String::from_utf8(o.stderr).unwrap()
}

fn accounts(h: &Head) -> Vec<Value> {
    let out = ok(h, None, &["admin", "ls", "--json"], None);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn make_account(h: &Head, name: &str, role: &str, extra: &[&str]) {
    let mut args = vec!["admin", "create"];
    let (n, r) = (format!("name={name}"), format!("role={role}"));
    args.extend([n.as_str(), r.as_str()]);
    args.extend(extra);
    args.push("--password-stdin");
    let out = ok(h, None, &args, Some(&format!("{name}-password\n")));
    assert!(
        out.contains(&format!("Created admin account {name}")),
        "{out}"
    );
}

fn login(h: &Head, u: &User, name: &str) -> String {
    ok(
        h,
        Some(u),
        &["login", name, "--password-stdin"],
        Some(&format!("{name}-password\n")),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn roles_sessions_logout_and_revoke() {
    let mut h = Head::start();
    let keys = head::write(
        h.dir.path(),
        "authorized_keys",
        b"# ada's keys\n\
          ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ada@laptop\n\
          \n\
          ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7vbqajDhA ada@desk\n",
    );
    let keys_arg = format!("ssh_keys=@{}", keys.display());
    make_account(&h, "vera", "viewer", &["description=reads"]);
    make_account(&h, "otto", "operator", &[]);
    make_account(&h, "ada", "admin", &[&keys_arg]);
    ok(&h, None, &["node", "create", "mac=52:54:00:00:00:01"], None);

    // Listings show roles and keys, never a hash.
    let all = accounts(&h);
    let ada = all.iter().find(|a| a["name"] == "ada").unwrap();
    assert_eq!(ada["role"], "admin");
    assert_eq!(ada["ssh_keys"].as_array().unwrap().len(), 2, "{ada}");
    assert!(ada["ssh_keys"][1].as_str().unwrap().ends_with("ada@desk"));
    for flags in [
        &["-l"][..],
        &["-L"],
        &["-t"],
        &["--json"],
        &["-L", "--json"],
        &[],
    ] {
        let mut args = vec!["admin", "ls"];
        args.extend(flags);
        let out = ok(&h, None, &args, None);
        assert!(
            out.contains("vera") && out.contains("otto"),
            "{flags:?}: {out}"
        );
        assert!(
            !out.contains("$argon2"),
            "a hash in wulf admin ls {flags:?}:\n{out}"
        );
    }
    let long = ok(&h, None, &["admin", "ls", "-l"], None);
    assert!(long.contains("role: operator"), "{long}");

    // A password on the command line is refused before anything is sent.
    let before = h.revision();
    let err = fails(
        &h,
        None,
        2,
        &[
            "admin",
            "create",
            "name=eve",
            "role=admin",
            "password=hunter2hunter2",
        ],
        None,
    );
    assert!(err.contains("--password-stdin"), "{err}");
    let err = fails(
        &h,
        None,
        2,
        &["admin", "-i", "vera", "update", "password=hunter2hunter2"],
        None,
    );
    assert!(err.contains("--password-stdin"), "{err}");
    // --password needs a terminal; a bad role, an empty stdin: all refused, nothing made.
    let err = fails(
        &h,
        None,
        2,
        &["admin", "create", "name=eve", "role=admin", "--password"],
        None,
    );
    assert!(err.contains("not a terminal"), "{err}");
    let err = fails(
        &h,
        None,
        2,
        &["admin", "create", "name=eve", "role=root"],
        None,
    );
    assert!(err.contains("not a role"), "{err}");
    fails(
        &h,
        None,
        2,
        &[
            "admin",
            "create",
            "name=eve",
            "role=admin",
            "--password-stdin",
        ],
        Some(""),
    );
    assert_eq!(h.revision(), before, "refused commands changed nothing");
    assert!(!accounts(&h).iter().any(|a| a["name"] == "eve"));

    let objects = (h.snapshot(), accounts(&h));

    // vera logs in from her own machine: a session file only she can read.
    let vera = User::new();
    let out = login(&h, &vera, "vera");
    let url = h.url();
    assert!(
        out.contains(&format!(
            "Logged in to {url} as vera (role viewer); the session lasts until"
        )),
        "{out}"
    );
    assert_eq!(mode(&vera.session_file()), 0o600);
    assert_eq!(mode(vera.session_file().parent().unwrap()), 0o700);
    let s = vera.session();
    assert_eq!(s["url"], url.as_str());
    assert_eq!(s["name"], "vera");
    assert_eq!(s["role"], "viewer");
    assert!(s["access_token"].as_str().unwrap().starts_with("wulf1."));
    let who = ok(&h, Some(&vera), &["whoami"], None);
    assert!(
        who.contains("name:    vera") && who.contains("role:    viewer"),
        "{who}"
    );
    assert!(who.contains("wulf login"), "via the session: {who}");

    // A wrong password: refused, the session file untouched.
    let err = fails(
        &h,
        Some(&vera),
        1,
        &["login", "vera", "--password-stdin"],
        Some("wrong-password\n"),
    );
    assert!(err.contains("wrong account name or password"), "{err}");
    assert_eq!(vera.session(), s);
    // No terminal and no --password-stdin: bad usage.
    fails(&h, Some(&vera), 2, &["login", "vera"], None);

    // A viewer reads, but neither changes nor acts; the refusal names the role needed.
    let nodes = ok(&h, Some(&vera), &["node", "ls"], None);
    assert!(nodes.contains("n0"), "{nodes}");
    let err = fails(
        &h,
        Some(&vera),
        1,
        &["node", "create", "mac=52:54:00:00:00:02"],
        None,
    );
    assert!(err.contains("needs admin"), "{err}");
    let err = fails(
        &h,
        Some(&vera),
        1,
        &["node", "-i", "n0", "exec", "--up", "--", "true"],
        None,
    );
    assert!(err.contains("needs operator"), "{err}");

    // An operator acts on nodes but does not change the cluster.
    let otto = User::new();
    login(&h, &otto, "otto");
    let o = run(
        &h,
        Some(&otto),
        &["node", "-i", "n0", "exec", "--up", "--", "true"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not up"),
        "{}",
        text(&o)
    );
    let err = fails(
        &h,
        Some(&otto),
        1,
        &["node", "create", "mac=52:54:00:00:00:02"],
        None,
    );
    assert!(err.contains("needs admin"), "{err}");
    let err = fails(
        &h,
        Some(&otto),
        1,
        &["admin", "create", "name=mallory", "role=admin"],
        None,
    );
    assert!(err.contains("needs admin"), "{err}");
    // (Logins write sessions, so compare the objects, not the revision.)
    assert_eq!(
        (h.snapshot(), accounts(&h)),
        objects,
        "refused requests changed nothing"
    );

    // An admin changes things, and revokes otto's session.
    let ada_user = User::new();
    login(&h, &ada_user, "ada");
    ok(
        &h,
        Some(&ada_user),
        &["node", "create", "mac=52:54:00:00:00:02"],
        None,
    );
    ok(&h, Some(&otto), &["node", "ls"], None);
    let out = ok(
        &h,
        Some(&ada_user),
        &["admin", "-i", "otto", "revoke"],
        None,
    );
    assert!(out.contains("Revoked") && out.contains("otto"), "{out}");
    let err = fails(&h, Some(&otto), 1, &["node", "ls"], None);
    assert!(
        err.contains("your session as otto ended")
            && err.contains("revoked")
            && err.contains("wulf login"),
        "{err}"
    );
    // otto logs in again and is back.
    login(&h, &otto, "otto");
    ok(&h, Some(&otto), &["node", "ls"], None);

    // Logging out ends the session on the head too: its token no longer works anywhere.
    let token = vera.session()["access_token"].as_str().unwrap().to_string();
    let out = ok(&h, Some(&vera), &["logout"], None);
    assert!(out.contains("Logged out"), "{out}");
    assert!(!vera.session_file().exists());
    let err = fails(&h, Some(&vera), 1, &["node", "ls"], None);
    assert!(err.contains("wulf login"), "{err}");
    let (code, body) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{url}/api/v1/whoami"),
    ]);
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    // Logging out twice is harmless.
    ok(&h, Some(&vera), &["logout"], None);

    // A new role ends the account's session; the new role shows at the next login.
    ok(
        &h,
        None,
        &["admin", "-i", "otto", "update", "role=viewer"],
        None,
    );
    let err = fails(&h, Some(&otto), 1, &["node", "ls"], None);
    assert!(err.contains("wulf login"), "{err}");
    let out = login(&h, &otto, "otto");
    assert!(out.contains("(role viewer)"), "{out}");
    // A new password, from stdin, for an existing account.
    ok(
        &h,
        None,
        &["admin", "-i", "otto", "update", "--password-stdin"],
        Some("a-new-password\n"),
    );
    fails(
        &h,
        Some(&otto),
        1,
        &["login", "otto", "--password-stdin"],
        Some("otto-password\n"),
    );
    ok(
        &h,
        Some(&otto),
        &["login", "otto", "--password-stdin"],
        Some("a-new-password\n"),
    );

    // The bootstrap token is still what the head's own admin uses.
    let who = ok(&h, None, &["whoami"], None);
    assert!(
        who.contains("name:    root") && who.contains("bootstrap"),
        "{who}"
    );

    // Deleting an account ends its sessions at once.
    ok(&h, None, &["admin", "-i", "otto", "delete"], None);
    let err = fails(&h, Some(&otto), 1, &["node", "ls"], None);
    assert!(
        err.contains("no longer exists") && err.contains("wulf login"),
        "{err}"
    );

    // Logging out while the head is down still forgets the session, and says so.
    h.stop();
    let err = fails(&h, Some(&ada_user), 1, &["logout"], None);
    assert!(err.contains("Removed") && err.contains("revoke"), "{err}");
    assert!(!ada_user.session_file().exists());
}

#[test]
fn expired_access_tokens_are_renewed() {
    let h = Head::start_configured(None, "[auth]\naccess_secs = 5\n", &[]);
    make_account(&h, "vera", "viewer", &[]);
    let vera = User::new();
    login(&h, &vera, "vera");
    let first = vera.session()["access_token"].as_str().unwrap().to_string();
    let refresh = vera.session()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = |t: &str| format!("Authorization: Bearer {t}");
    let whoami = format!("{}/api/v1/whoami", h.url());

    // Wait (bounded) until the head itself calls the first access token expired.
    head::wait_every(
        "the access token to expire",
        Duration::from_secs(15),
        Duration::from_millis(500),
        || h.curl(&["-H", &auth(&first), &whoami]).0 == 401,
        String::new,
    );
    // The CLI renews it behind the user's back and keeps the new one.
    ok(&h, Some(&vera), &["node", "ls"], None);
    let s = vera.session();
    let renewed = s["access_token"].as_str().unwrap().to_string();
    assert_ne!(renewed, first, "a new access token was saved");
    assert_eq!(
        s["refresh_token"].as_str().unwrap(),
        refresh,
        "the session is the same"
    );
    assert_eq!(
        mode(&vera.session_file()),
        0o600,
        "still private after the rewrite"
    );
    assert_eq!(h.curl(&["-H", &auth(&renewed), &whoami]).0, 200);
    let who = ok(&h, Some(&vera), &["whoami"], None);
    assert!(who.contains("name:    vera"), "{who}");
}

/// Run `wulf` on a terminal (util-linux `script` gives it a pty), typing each answer once
/// its prompt shows; returns the exit code and everything the terminal showed.
fn on_terminal(
    h: &Head,
    user: Option<&User>,
    args: &[&str],
    answers: &[(&str, &str)],
) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let quoted: Vec<String> = std::iter::once(wulf_bin().display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_remove("WULF_TOKEN")
        .env_remove("XDG_CONFIG_HOME")
        .env("WULF_URL", h.url())
        .env("WULF_CA", h.data().join("tls/ca.pem"));
    match user {
        Some(u) => cmd
            .env("HOME", u.home.path())
            .env("WULF_DATA_DIR", u.home.path().join("empty-data"))
            .env("WULF_CONFIG", u.home.path().join("wulf.toml")),
        None => cmd
            .env("HOME", h.dir.path())
            .env("WULF_DATA_DIR", h.data())
            .env_remove("WULF_CONFIG"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) must be installed");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let mut stdin = child.stdin.take().unwrap();
    let mut from = 0;
    for (prompt, answer) in answers {
        head::wait_for(
            &format!("the prompt {prompt:?}"),
            Duration::from_secs(30),
            || shown().get(from..).unwrap_or("").contains(prompt),
            shown,
        );
        from = shown().len();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wulf {args:?} on a terminal did not finish:\n{}", shown());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    (status.code(), shown())
}

#[test]
fn passwords_typed_on_a_terminal_are_not_shown() {
    let h = Head::start();
    // Typed twice for a new password; a typo in the second changes nothing.
    let (code, screen) = on_terminal(
        &h,
        None,
        &[
            "admin",
            "create",
            "name=carol",
            "role=operator",
            "--password",
        ],
        &[
            ("New password for carol: ", "carol-secret-1"),
            ("Again: ", "carol-secret-2"),
        ],
    );
    assert_eq!(code, Some(2), "{screen}");
    assert!(screen.contains("differ"), "{screen}");
    assert!(!accounts(&h).iter().any(|a| a["name"] == "carol"));
    let (code, screen) = on_terminal(
        &h,
        None,
        &[
            "admin",
            "create",
            "name=carol",
            "role=operator",
            "--password",
        ],
        &[
            ("New password for carol: ", "carol-secret-1"),
            ("Again: ", "carol-secret-1"),
        ],
    );
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("Created admin account carol"), "{screen}");
    assert!(
        !screen.contains("carol-secret"),
        "the password was echoed:\n{screen}"
    );

    // Logging in on a terminal asks once, without echo.
    let carol = User::new();
    let (code, screen) = on_terminal(
        &h,
        Some(&carol),
        &["login", "carol"],
        &[(
            &format!("Password for carol at {}: ", h.url()),
            "carol-secret-1",
        )],
    );
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("Logged in to"), "{screen}");
    assert!(
        !screen.contains("carol-secret"),
        "the password was echoed:\n{screen}"
    );
    let who = ok(&h, Some(&carol), &["whoami"], None);
    assert!(who.contains("role:    operator"), "{who}");
}

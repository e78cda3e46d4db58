//! `wulf login`, `wulf logout`, `wulf whoami`, the saved session they share
//! (`~/.config/wulf/session.json`, or `$XDG_CONFIG_HOME/wulf/session.json`), and reading a
//! password from a terminal without echo or from stdin.
//!
//! A session holds an access token (an hour by default) and a refresh token (a week). Every
//! command that talks to the session's head sends the access token, first trading the refresh
//! token for a new one when it has expired or is within [`RENEW_BEFORE`] seconds of expiring.

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use wulf_api::auth::{LoginRequest, RefreshRequest, Role, TokenReply, WhoAmI};
use wulf_api::ApiError;

use crate::args::Cli;
use crate::conn::{self, Tls};
use crate::fail::{usage, Fail};
use crate::output;

/// An access token this close to its expiry (seconds) is renewed before it is used.
pub(crate) const RENEW_BEFORE: u64 = 60;

/// `wulf login [NAME] [--password-stdin]`.
#[derive(Args, Debug)]
pub(crate) struct LoginArgs {
    /// The account to log in as [default: $USER]
    pub(crate) name: Option<String>,
    /// Read the password from the first line of standard input (for scripts:
    /// `wulf login alice --password-stdin < pwfile`) instead of asking on the terminal
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

/// What `wulf login` keeps (mode 0600): the head it is for and the two tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) access_token: String,
    /// Unix seconds.
    pub(crate) access_expires: u64,
    pub(crate) refresh_token: String,
    pub(crate) refresh_expires: u64,
}

impl Session {
    fn from_reply(url: &str, r: TokenReply) -> Session {
        Session {
            url: same_url(url),
            name: r.name,
            role: r.role,
            access_token: r.access_token,
            access_expires: r.access_expires,
            refresh_token: r.refresh_token,
            refresh_expires: r.refresh_expires,
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// URLs compare without a trailing slash.
fn same_url(u: &str) -> String {
    u.trim_end_matches('/').to_string()
}

/// `$XDG_CONFIG_HOME/wulf`, else `~/.config/wulf`.
pub(crate) fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if Path::new(&x).is_absolute() => Some(Path::new(&x).join("wulf")),
        _ => std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/wulf")),
    }
}

pub(crate) fn session_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("session.json"))
}

/// The saved session, if there is one. A file that cannot be read is an error (it is left
/// for the user to look at or remove with `wulf logout`).
pub(crate) fn load() -> Result<Option<(PathBuf, Session)>, Fail> {
    let Some(path) = session_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Fail::Request(anyhow::anyhow!(
                "cannot read the session file {}: {e}",
                path.display()
            )))
        }
    };
    let s: Session = serde_json::from_str(&text).map_err(|e| {
        Fail::Request(anyhow::anyhow!(
            "the session file {} is damaged ({e}): remove it with `wulf logout`, then \
             `wulf login`",
            path.display()
        ))
    })?;
    Ok(Some((path, s)))
}

/// Write the session atomically (a private temporary file renamed over the old one) in a
/// directory only its owner can enter.
pub(crate) fn save(s: &Session) -> Result<PathBuf, Fail> {
    let fail = |what: String| Fail::Request(anyhow::anyhow!(what));
    let dir = config_dir().ok_or_else(|| {
        fail("neither $HOME nor $XDG_CONFIG_HOME is set: nowhere to keep the session".into())
    })?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let meta =
        std::fs::metadata(&dir).map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(format!("cannot make {} private: {e}", dir.display())))?;
    }
    let path = dir.join("session.json");
    // NamedTempFile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".session.")
        .tempfile_in(&dir)
        .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))?;
    let text = serde_json::to_vec_pretty(s).map_err(|e| fail(e.to_string()))?;
    tmp.write_all(&text)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    tmp.persist(&path)
        .map_err(|e| fail(format!("cannot write {}: {}", path.display(), e.error)))?;
    Ok(path)
}

fn remove(path: &Path) -> Result<(), Fail> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Fail::Request(anyhow::anyhow!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// Set when this run's requests carry a session's access token, so a 401 is explained as
/// the session's end.
static SESSION_USED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What to say about a head's 401 when the token came from `wulf login`.
pub(crate) fn explain(e: &ApiError) -> Option<anyhow::Error> {
    match e {
        ApiError::Status {
            status: 401,
            message,
            ..
        } => SESSION_USED.get().map(|name| ended(name, message)),
        _ => None,
    }
}

fn ended(name: &str, reason: &str) -> anyhow::Error {
    // The head's reasons end in advice to log in again, which follows here anyway.
    let reason = reason.split(": log in again").next().unwrap_or(reason);
    anyhow::anyhow!("your session as {name} ended ({reason}): wulf login {name}")
}

/// A client with no token, for logging in and refreshing.
fn anonymous(url: &str, tls: Option<&Tls>) -> wulf_api::Client {
    conn::client_with(url, None, tls, wulf_api::Client::builder())
}

/// The access token of the saved session for `url`, renewed first when it is (nearly)
/// expired. None when there is no session for that head.
pub(crate) fn session_token(url: &str, tls: Option<&Tls>) -> Result<Option<String>, Fail> {
    let Some((_, mut s)) = load()? else {
        return Ok(None);
    };
    if s.url != same_url(url) {
        return Ok(None);
    }
    let _ = SESSION_USED.set(s.name.clone());
    if s.refresh_expires <= now() {
        return Err(Fail::Request(ended(
            &s.name,
            &format!("it expired at {}", when(s.refresh_expires)),
        )));
    }
    if s.access_expires <= now() + RENEW_BEFORE {
        renew(url, tls, &mut s).map_err(|e| match explain(&e) {
            Some(m) => Fail::Request(m),
            None => Fail::from(e),
        })?;
        save(&s)?;
    }
    Ok(Some(s.access_token))
}

/// Trade the session's refresh token for a new access token.
fn renew(url: &str, tls: Option<&Tls>, s: &mut Session) -> Result<(), ApiError> {
    let reply: TokenReply = anonymous(url, tls).send(
        "POST",
        "/login/refresh",
        &RefreshRequest {
            refresh_token: s.refresh_token.clone(),
        },
    )?;
    s.role = reply.role;
    s.access_token = reply.access_token;
    s.access_expires = reply.access_expires;
    Ok(())
}

/// A Unix time as `2025-06-01 14:03:00 UTC (in 7 days)`.
pub(crate) fn when(secs: u64) -> String {
    let at = crate::clock::utc(i64::try_from(secs).unwrap_or(i64::MAX));
    let now = now();
    let rel = if secs <= now {
        "past".to_string()
    } else {
        let left = secs - now;
        let round = |unit: u64| (left + unit / 2) / unit;
        match left {
            0..=119 => format!("in {left} seconds"),
            120..=7_199 => format!("in {} minutes", round(60)),
            7_200..=172_799 => format!("in {} hours", round(3600)),
            _ => format!("in {} days", round(86_400)),
        }
    };
    format!("{at} UTC ({rel})")
}

/// One line of standard input, the line end removed (`--password-stdin`).
pub(crate) fn password_from_stdin() -> Result<String, Fail> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_line(&mut line)
        .map_err(|e| usage(format!("cannot read the password from stdin: {e}")))?;
    let p = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if p.is_empty() {
        return Err(usage("--password-stdin: standard input holds no password"));
    }
    Ok(p.to_string())
}

fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only looks at the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Turns the terminal's echo off; restores it when dropped, or when Ctrl-C or a SIGTERM ends
/// the program while it is off.
struct EchoOff {
    saved: libc::termios,
    handlers: Vec<signal_hook::SigId>,
}

impl EchoOff {
    fn new() -> std::io::Result<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let saved = t;
        let mut handlers = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the handler calls only async-signal-safe functions (tcsetattr, write,
            // _exit).
            let id = unsafe {
                signal_hook::low_level::register(sig, move || {
                    libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
                    libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1);
                    libc::_exit(128 + sig);
                })
            }?;
            handlers.push(id);
        }
        let off = EchoOff { saved, handlers };
        t.c_lflag &= !(libc::ECHO | libc::ECHONL);
        t.c_lflag |= libc::ICANON;
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(off)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read in `new`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &self.saved) };
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Ask for a password on the terminal without showing it (echo goes off before the prompt
/// shows, so nothing typed after it is echoed).
fn prompt(text: &str) -> Result<String, Fail> {
    let guard =
        EchoOff::new().map_err(|e| usage(format!("cannot turn off the terminal's echo: {e}")))?;
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin().lock().take(64 * 1024).read_line(&mut line);
    drop(guard);
    eprintln!();
    read.map_err(|e| usage(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The password from the terminal (asked `twice` to catch typos, for a new password).
pub(crate) fn password_from_terminal(what: &str, twice: bool) -> Result<String, Fail> {
    if !stdin_is_terminal() {
        return Err(usage(
            "standard input is not a terminal, so there is no one to ask for the password: \
             give it on standard input with --password-stdin",
        ));
    }
    let p = prompt(&format!("{what}: "))?;
    if p.is_empty() {
        return Err(usage("no password given"));
    }
    if twice && prompt("Again: ")? != p {
        return Err(usage("the two passwords differ; nothing was changed"));
    }
    Ok(p)
}

/// `wulf login [NAME] [--password-stdin]`.
pub(crate) fn login(cli: &Cli, a: &LoginArgs) -> Result<(), Fail> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| usage("$USER is not set: say which account, wulf login NAME"))?,
    };
    let (url, tls) = conn::endpoint(cli)?;
    let password = if a.password_stdin {
        password_from_stdin()?
    } else {
        password_from_terminal(&format!("Password for {name} at {url}"), false)?
    };
    let reply: TokenReply = anonymous(&url, tls.as_ref())
        .send("POST", "/login", &LoginRequest { name, password })
        .map_err(|e| match e {
            ApiError::Status {
                status: 401,
                message,
                ..
            } => Fail::Request(anyhow::anyhow!("{message}; nothing was saved")),
            e => Fail::from(e),
        })?;
    let s = Session::from_reply(&url, reply);
    let path = save(&s)?;
    if cli.json {
        output::print_json(&serde_json::json!({
            "url": s.url,
            "name": s.name,
            "role": s.role,
            "access_expires": s.access_expires,
            "refresh_expires": s.refresh_expires,
            "session_file": path,
        }));
    } else {
        println!(
            "Logged in to {} as {} (role {}); the session lasts until {}",
            s.url,
            s.name,
            s.role,
            when(s.refresh_expires)
        );
    }
    Ok(())
}

/// `wulf logout`: end the session on the head, then forget it here (even when the head
/// cannot be reached, which is then reported).
pub(crate) fn logout(cli: &Cli) -> Result<(), Fail> {
    let (url, tls) = conn::endpoint(cli)?;
    let Some((path, s)) = load()? else {
        eprintln!("wulf: not logged in (no session file)");
        return Ok(());
    };
    if s.url != same_url(&url) {
        eprintln!(
            "wulf: not logged in to {url} (the saved session is for {}; log out of it with \
             --url {})",
            s.url, s.url
        );
        return Ok(());
    }
    let done = |msg: String| {
        println!("{msg}");
        Ok(())
    };
    if s.refresh_expires <= now() {
        remove(&path)?;
        return done(format!(
            "The session as {} at {} had already expired; removed {}",
            s.name,
            s.url,
            path.display()
        ));
    }
    let mut live = s.clone();
    let answer = (|| -> Result<serde_json::Value, ApiError> {
        if live.access_expires <= now() + RENEW_BEFORE {
            renew(&url, tls.as_ref(), &mut live)?;
        }
        let c = conn::client_with(
            &url,
            Some(live.access_token.clone()),
            tls.as_ref(),
            wulf_api::Client::builder(),
        );
        c.send("POST", "/logout", &serde_json::json!({}))
    })();
    remove(&path)?;
    match answer {
        Ok(_) => done(format!("Logged out of {} ({})", s.url, s.name)),
        Err(ApiError::Status {
            status: 401,
            message,
            ..
        }) => done(format!(
            "The session as {} at {} had already ended ({message}); removed {}",
            s.name,
            s.url,
            path.display()
        )),
        Err(e @ ApiError::Transport { .. }) => Err(Fail::Request(anyhow::anyhow!(
            "{e}. Removed {}, but the head keeps the session until {}: when the head is back, \
             end it with `wulf admin -i {} revoke` (or log in and out again)",
            path.display(),
            when(s.refresh_expires),
            s.name
        ))),
        Err(e) => Err(Fail::Request(anyhow::anyhow!(
            "{e}. Removed {}; the head may keep the session until {}",
            path.display(),
            when(s.refresh_expires)
        ))),
    }
}

/// `wulf whoami`: the account the head sees for this command line's token.
pub(crate) fn whoami(cli: &Cli) -> Result<(), Fail> {
    let c = conn::client(cli)?;
    let me: WhoAmI = c.get("/whoami")?;
    if cli.json {
        output::print_json(&me);
        return Ok(());
    }
    let session = load()
        .ok()
        .flatten()
        .map(|(_, s)| s)
        .filter(|s| s.url == same_url(c.base()));
    let via = match (me.via.as_str(), &session) {
        ("bootstrap", _) => "the bootstrap token (the head's DATA_DIR/admin.token)".to_string(),
        ("token", Some(s)) if SESSION_USED.get().is_some() => {
            format!("wulf login (session until {})", when(s.refresh_expires))
        }
        ("token", _) => "an access token from --token, WULF_TOKEN or the config file".to_string(),
        (other, _) => other.to_string(),
    };
    println!("head:    {}", c.base());
    println!("name:    {}", me.name);
    println!("role:    {}", me.role);
    println!("via:     {via}");
    match me.expires {
        Some(t) if SESSION_USED.get().is_some() => {
            println!("token:   until {} (renewed as needed)", when(t))
        }
        Some(t) => println!("token:   until {}", when(t)),
        None => println!("token:   does not expire"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert!(when(0).starts_with("1970-01-01 00:00:00 UTC"));
        assert!(when(951_782_400).starts_with("2000-02-29 00:00:00 UTC"));
        assert!(when(1_735_689_599).starts_with("2024-12-31 23:59:59 UTC"));
        assert!(when(now() + 7 * 86_400 + 30).ends_with("(in 7 days)"));
    }

    #[test]
    fn urls_compare_without_the_trailing_slash() {
        assert_eq!(same_url("https://h:8740/"), same_url("https://h:8740"));
    }
}

//! The node's credential: traded for the boot's enrollment token, and kept.
//!
//! The head's boot script gives a booting node a one-time enrollment token
//! (`wulf.enroll=`, written to `agent.conf` as `enroll=` by the initramfs). At start the
//! agent looks in its credential file (`/run/wulf/agent.cred`, mode 0600): when it holds the
//! credential of this node and this boot (an agent restarted since), that is used. Otherwise
//! the agent trades the token at `POST /api/v1/node/enroll` on its heads, in order, for the
//! credential of this boot, and writes it to the file before reporting. A token enrolls once,
//! from the address the boot script was sent to, within 10 minutes; a refused enrollment is
//! said plainly and tried again slowly (see [`obtain`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};
use wulf_api::enroll::{EnrollReply, EnrollRequest};
use wulf_api::ErrorBody;

/// Where the credential of this boot is kept: `/run` starts empty at every boot.
pub const CRED_FILE: &str = "/run/wulf/agent.cred";
/// The enrollment endpoint under a head's base URL.
pub const PATH: &str = "/api/v1/node/enroll";
/// Where the kernel says which boot this is.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// A head that cannot be reached is asked again after this long.
pub const RETRY_UNREACHABLE: Duration = Duration::from_secs(5);
/// A head that refused is asked again after this long (the refusal rarely changes).
pub const RETRY_REFUSED: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{head} refused the enrollment (HTTP {status}): {message}")]
    Refused {
        head: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach {head} to enroll: {message}")]
    Transport { head: String, message: String },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("bad answer from {head} to the enrollment: {message}")]
    Decode { head: String, message: String },
    #[error("no head enrolled this node: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<EnrollError>),
}

impl EnrollError {
    /// True when some head answered and said no (as opposed to none being reachable).
    pub fn refused(&self) -> bool {
        match self {
            EnrollError::Refused { .. } | EnrollError::Decode { .. } | EnrollError::Tls(_) => true,
            EnrollError::Transport { .. } => false,
            EnrollError::AllFailed(all) => all.iter().any(EnrollError::refused),
        }
    }
}

/// This boot's id, or None where the kernel does not say.
pub fn boot_id(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn render(node: &str, boot_id: Option<&str>, cred: &str) -> String {
    format!(
        "# written by wulf-agent: the node's credential of this boot\nnode={node}\nboot_id={}\ncred={cred}\n",
        boot_id.unwrap_or("")
    )
}

/// The credential in `text` when it is node `node`'s of boot `boot_id`.
pub fn parse(text: &str, node: &str, boot_id: Option<&str>) -> Option<String> {
    let mut got = (None, None, None);
    for line in text.lines() {
        match line.trim().split_once('=') {
            Some(("node", v)) => got.0 = Some(v.trim()),
            Some(("boot_id", v)) => got.1 = Some(v.trim()),
            Some(("cred", v)) => got.2 = Some(v.trim()),
            _ => {}
        }
    }
    match got {
        (Some(n), Some(b), Some(c)) if n == node && b == boot_id.unwrap_or("") && !c.is_empty() => {
            Some(c.to_string())
        }
        _ => None,
    }
}

/// The credential kept in `path` for node `node` and boot `boot_id`, if there is one. A file
/// others may read is made private first.
pub fn load(path: &Path, node: &str, boot_id: Option<&str>) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!("cannot read {}: {e}", path.display());
            return None;
        }
    };
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            warn!(
                "{} could be read by others (mode {:o}); making it 0600",
                path.display(),
                m.permissions().mode() & 0o777
            );
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
    let cred = parse(&text, node, boot_id);
    if cred.is_none() {
        info!(
            "{} holds no credential of this node and boot; enrolling",
            path.display()
        );
    }
    cred
}

/// Keep `cred` in `path` (mode 0600, its directory 0700 when made), replacing it whole.
pub fn save(path: &Path, node: &str, boot_id: Option<&str>, cred: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(render(node, boot_id, cred).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// An HTTP client for enrolling at `head`, with the report's timeouts (TLS checked against
/// the cluster CA, see [`crate::tls`]).
fn http(head: &str) -> Result<ureq::Agent, EnrollError> {
    let b = ureq::AgentBuilder::new()
        .timeout_connect(crate::send::CONNECT_TIMEOUT)
        .timeout(crate::send::TIMEOUT)
        .max_idle_connections(0)
        .user_agent(concat!("wulf-agent/", env!("CARGO_PKG_VERSION")));
    Ok(crate::tls::trust().agent(head, b)?)
}

fn post(head: &str, req: &EnrollRequest) -> Result<String, EnrollError> {
    let url = format!("{head}{PATH}");
    let http = http(head)?;
    let body = serde_json::to_vec(req).map_err(|e| EnrollError::Decode {
        head: head.to_string(),
        message: e.to_string(),
    })?;
    let r = http
        .post(&url)
        .set("Content-Type", "application/json")
        .send_bytes(&body);
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(status, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let message = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => b.error,
                Err(_) if text.trim().is_empty() => "no details".into(),
                Err(_) => text.trim().chars().take(200).collect(),
            };
            return Err(EnrollError::Refused {
                head: head.to_string(),
                status,
                message,
            });
        }
        Err(ureq::Error::Transport(t)) => {
            let text = t.to_string();
            let message = text
                .strip_prefix(&format!("{url}: "))
                .unwrap_or(&text)
                .to_string();
            return Err(EnrollError::Transport {
                head: head.to_string(),
                message,
            });
        }
    };
    let text = resp.into_string().map_err(|e| EnrollError::Transport {
        head: head.to_string(),
        message: e.to_string(),
    })?;
    let reply: EnrollReply = serde_json::from_str(&text).map_err(|e| EnrollError::Decode {
        head: head.to_string(),
        message: e.to_string(),
    })?;
    if reply.node != req.node || reply.credential.is_empty() {
        return Err(EnrollError::Decode {
            head: head.to_string(),
            message: format!(
                "the answer is for node '{}', with no credential",
                reply.node
            ),
        });
    }
    Ok(reply.credential)
}

/// Trade `token` for node `node`'s credential at the first of `heads` that takes it.
pub fn trade(heads: &[String], node: &str, token: &str) -> Result<(String, String), EnrollError> {
    let req = EnrollRequest {
        node: node.to_string(),
        token: token.to_string(),
    };
    let mut errors = Vec::new();
    for head in heads {
        match post(head, &req) {
            Ok(cred) => return Ok((cred, head.clone())),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        1 => Err(errors.remove(0)),
        _ => Err(EnrollError::AllFailed(errors)),
    }
}

/// What [`obtain`] does between tries: sleep this long, or return true to give up (a stop
/// was asked for, or there is only one try).
pub trait Pause {
    fn pause(&mut self, d: Duration) -> bool;
}

/// The node's credential: `settings.cred` when given outright, else the one kept in
/// `cred_file` for this node and boot, else one traded for `settings.enroll` (then kept in
/// `cred_file`). Failed tries are logged and repeated after [`RETRY_UNREACHABLE`] (no head
/// answered) or [`RETRY_REFUSED`] (a head refused) until `pause` gives up; then the last
/// error is returned.
pub fn obtain(
    settings: &crate::config::Settings,
    cred_file: &Path,
    boot_id: Option<&str>,
    pause: &mut dyn Pause,
) -> Result<String, EnrollError> {
    if !settings.cred.is_empty() {
        return Ok(settings.cred.clone());
    }
    if let Some(c) = load(cred_file, &settings.node, boot_id) {
        info!(
            "using the credential of this boot from {}",
            cred_file.display()
        );
        return Ok(c);
    }
    let token = settings.enroll.as_deref().unwrap_or_default();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match trade(&settings.heads, &settings.node, token) {
            Ok((cred, head)) => {
                info!("enrolled at {head}: got the node's credential of this boot");
                match save(cred_file, &settings.node, boot_id, &cred) {
                    Ok(()) => info!("kept it in {}", cred_file.display()),
                    Err(e) => warn!(
                        "cannot keep the credential in {}: {e}; a restarted agent will not be \
                         able to report until the node reboots",
                        cred_file.display()
                    ),
                }
                return Ok(cred);
            }
            Err(e) => {
                let wait = if e.refused() {
                    RETRY_REFUSED
                } else {
                    RETRY_UNREACHABLE
                };
                let hint = if e.refused() {
                    "; the token of a boot enrolls once, from the node's own address, within 10 \
                     minutes: reboot the node (wulf node -i NODE reboot, or power cycle) to get a \
                     new one"
                } else {
                    ""
                };
                warn!(
                    "enrollment failed (try {tries}): {e}{hint}; trying again in {} s",
                    wait.as_secs()
                );
                if pause.pause(wait) {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_its_node_and_boot() {
        let t = render("n1", Some("b1"), "c1");
        assert_eq!(parse(&t, "n1", Some("b1")).as_deref(), Some("c1"));
        assert_eq!(parse(&t, "n2", Some("b1")), None);
        assert_eq!(parse(&t, "n1", Some("b2")), None);
        assert_eq!(parse(&t, "n1", None), None);
        let t = render("n1", None, "c1");
        assert_eq!(parse(&t, "n1", None).as_deref(), Some("c1"));
        assert_eq!(parse("node=n1\nboot_id=\ncred=\n", "n1", None), None);
        assert_eq!(parse("garbage", "n1", None), None);
    }

    #[test]
    fn saved_privately_and_loaded() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/agent.cred");
        save(&path, "n1", Some("b1"), "c1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(load(&path, "n1", Some("b1")).as_deref(), Some("c1"));
        // A readable file is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load(&path, "n1", Some("b1")).as_deref(), Some("c1"));
        assert_eq!(mode(&path), 0o600);
        save(&path, "n1", Some("b2"), "c2").unwrap();
        assert_eq!(load(&path, "n1", Some("b1")), None);
        assert_eq!(load(&d.path().join("none"), "n1", None), None);
    }

    struct Count(u32);
    impl Pause for Count {
        fn pause(&mut self, _: Duration) -> bool {
            self.0 += 1;
            self.0 >= 2
        }
    }

    #[test]
    fn a_given_credential_or_a_kept_one_needs_no_head() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("agent.cred");
        let mut s = crate::config::Settings::new(vec!["http://127.0.0.1:1".into()], "n1", "given");
        let mut p = Count(0);
        assert_eq!(obtain(&s, &file, None, &mut p).unwrap(), "given");
        s.cred.clear();
        s.enroll = Some("tok".into());
        save(&file, "n1", None, "kept").unwrap();
        assert_eq!(obtain(&s, &file, None, &mut p).unwrap(), "kept");
        assert_eq!(p.0, 0);
        // Nothing kept, no head: tried until the pause gives up, with the error.
        std::fs::remove_file(&file).unwrap();
        let e = obtain(&s, &file, None, &mut p).unwrap_err();
        assert!(!e.refused());
        assert!(
            e.to_string().starts_with("cannot reach http://127.0.0.1:1"),
            "{e}"
        );
        assert_eq!(p.0, 2);
    }
}

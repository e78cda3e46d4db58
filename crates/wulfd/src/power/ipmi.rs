//! IPMI 2.0 (lanplus) through the `ipmitool` program. The password goes to ipmitool in its
//! environment (`-E` reads `IPMI_PASSWORD`), never on its command line, where `ps` would
//! show it. ipmitool's own retries (`-N` seconds, `-R` times) fit in the timeout, and the
//! process is killed when the timeout passes all the same.

use std::process::Stdio;
use std::time::Duration;

use super::uri::IpmiTarget;
use super::{Bmc, BmcOp, PowerError, PowerState};

/// The program, found on `PATH`.
const IPMITOOL: &str = "ipmitool";

pub struct Ipmitool {
    t: IpmiTarget,
}

impl Ipmitool {
    pub fn new(t: IpmiTarget) -> Ipmitool {
        Ipmitool { t }
    }

    fn addr(&self) -> String {
        if self.t.host.contains(':') {
            format!("[{}]:{}", self.t.host, self.t.port)
        } else {
            format!("{}:{}", self.t.host, self.t.port)
        }
    }
}

/// ipmitool's per-try wait (`-N`) and retries (`-R`) for a whole call of `timeout`: a
/// session takes a few exchanges, each of which may be retried.
pub fn retries(timeout: Duration) -> (u64, u64) {
    let secs = timeout.as_secs().max(1);
    let r = if secs >= 10 { 2 } else { 1 };
    let n = (secs / (2 * (r + 1))).clamp(1, 5);
    (n, r)
}

/// The arguments for `op` (the password is not among them).
pub fn args(t: &IpmiTarget, op: BmcOp, timeout: Duration) -> Vec<String> {
    let (n, r) = retries(timeout);
    let mut a: Vec<String> = [
        "-I",
        "lanplus",
        "-H",
        &t.host,
        "-p",
        &t.port.to_string(),
        "-U",
        &t.user,
        "-E",
        "-N",
        &n.to_string(),
        "-R",
        &r.to_string(),
        "-C",
        &t.cipher.to_string(),
        "-v",
        "chassis",
        "power",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(op.as_str().to_string());
    a
}

/// Lines of ipmitool's verbose output that say nothing about what went wrong.
fn noise(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || l.starts_with("Loading IANA")
        || l.starts_with("Running Get VSO")
        || l.starts_with("Discovered IPMB")
        || l == "Invalid completion code received: Invalid command"
        || l.starts_with("Unable to Get Channel Cipher Suites")
}

/// Sort a failed ipmitool run into an error class, from what it said.
pub fn classify(addr: &str, stdout: &str, stderr: &str, password: &str) -> PowerError {
    let mut said: Vec<String> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| !noise(l))
        .map(|l| l.trim().to_string())
        .collect();
    said.dedup();
    let mut text = said.join("; ");
    if !password.is_empty() && text.contains(password) {
        text = text.replace(password, wulf_model::secret::MASK);
    }
    let lower = text.to_ascii_lowercase();
    let detail = |what: &str| {
        if text.is_empty() {
            format!("{addr}: {what}")
        } else {
            format!("{addr}: {what} (ipmitool: {text})")
        }
    };
    if lower.contains("rakp")
        || lower.contains("unauthorized name")
        || lower.contains("password")
        || lower.contains("insufficient privilege")
    {
        PowerError::Login(detail(
            "wrong user or password, or not allowed this privilege",
        ))
    } else if lower.contains("get auth capabilities error")
        || lower.contains("no response")
        || lower.contains("unable to establish")
        || lower.contains("address lookup")
        || lower.contains("connection refused")
    {
        PowerError::Unreachable(detail("no answer"))
    } else if lower.contains("failed:") || lower.contains("completion code") {
        PowerError::Refused(detail("the BMC answered with an error"))
    } else {
        PowerError::Bmc(detail("ipmitool failed"))
    }
}

/// The power state in ipmitool's answer to `chassis power status`.
pub fn parse_status(stdout: &str) -> Option<PowerState> {
    let l = stdout.to_ascii_lowercase();
    if l.contains("chassis power is on") {
        Some(PowerState::On)
    } else if l.contains("chassis power is off") {
        Some(PowerState::Off)
    } else {
        None
    }
}

#[async_trait::async_trait]
impl Bmc for Ipmitool {
    async fn power(&self, op: BmcOp, timeout: Duration) -> Result<PowerState, PowerError> {
        let addr = self.addr();
        let child = tokio::process::Command::new(IPMITOOL)
            .args(args(&self.t, op, timeout))
            .env("IPMI_PASSWORD", self.t.password.expose())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                PowerError::Tool(format!(
                    "cannot run {IPMITOOL} ({e}): install it on the head (Debian: apt-get \
                     install ipmitool)"
                ))
            })?;
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(PowerError::Tool(format!("{IPMITOOL}: {e}"))),
            Err(_) => {
                return Err(PowerError::Timeout(format!(
                    "{addr}: no answer to 'power {}' within {} s",
                    op.as_str(),
                    timeout.as_secs()
                )))
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let e = classify(&addr, &stdout, &stderr, self.t.password.expose());
            tracing::debug!(bmc = %addr, op = op.as_str(), error = %e, "ipmitool failed");
            return Err(e);
        }
        match op.target() {
            Some(s) => Ok(s),
            None => parse_status(&stdout).ok_or_else(|| {
                PowerError::Bmc(format!(
                    "{addr}: cannot read the power state in ipmitool's answer '{}'",
                    stdout.trim()
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::uri::{parse, PowerUri};
    use super::*;

    fn target() -> IpmiTarget {
        match parse("ipmi://admin:hunter2@10.0.0.5:6230") {
            Ok(PowerUri::Ipmi(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_password_is_not_an_argument() {
        let a = args(&target(), BmcOp::Off, Duration::from_secs(10));
        assert!(!a.iter().any(|x| x.contains("hunter2")), "{a:?}");
        assert!(a.contains(&"-E".to_string()));
        let s = a.join(" ");
        assert!(
            s.contains("-H 10.0.0.5 -p 6230 -U admin -E -N 1 -R 2 -C 3"),
            "{s}"
        );
        assert!(s.ends_with("chassis power off"), "{s}");
    }

    #[test]
    fn retries_fit_the_timeout() {
        for secs in [1, 2, 5, 10, 30, 120] {
            let (n, r) = retries(Duration::from_secs(secs));
            assert!(n >= 1 && r >= 1, "{secs}: {n} {r}");
            assert!(n * (r + 1) <= secs.max(2) / 2 + 5, "{secs}: {n} {r}");
        }
    }

    #[test]
    fn failures_are_classified() {
        let e = classify(
            "h:623",
            "",
            "Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n",
            "pw",
        );
        assert_eq!(e.class(), "BMC refused login", "{e}");
        let e = classify(
            "h:623",
            "",
            "RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session",
            "pw",
        );
        assert_eq!(e.class(), "BMC refused login", "{e}");
        let e = classify(
            "h:623",
            "",
            "Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n",
            "pw",
        );
        assert_eq!(e.class(), "BMC unreachable", "{e}");
        let e = classify(
            "h:623",
            "",
            "Set Chassis Power Control to Reset failed: Invalid data field in request",
            "pw",
        );
        assert_eq!(e.class(), "BMC refused the command", "{e}");
        assert!(e.detail().contains("Invalid data field"), "{e}");
        let e = classify("h:623", "", "oops: secretpw was wrong", "secretpw");
        assert!(!e.to_string().contains("secretpw"), "{e}");
    }

    #[test]
    fn status_answers() {
        assert_eq!(parse_status("Chassis Power is on\n"), Some(PowerState::On));
        assert_eq!(
            parse_status("Chassis Power is off\n"),
            Some(PowerState::Off)
        );
        assert_eq!(parse_status("huh"), None);
    }
}

//! Redfish over HTTPS: power state from the ComputerSystem's `PowerState`, actions through
//! `ComputerSystem.Reset` (`On`, `ForceOff`, `ForceRestart`, `PowerCycle`; a cycle is
//! `ForceOff`, wait for off, `On` where `PowerCycle` is not among the allowed values).
//! Certificates are checked (against the system's CAs, or the URI's `ca`) unless the URI says
//! `insecure=1`. Credentials go in each request's Basic authorization, never in a URL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::uri::RedfishTarget;
use super::{Bmc, BmcOp, PowerError, PowerState};

pub struct Redfish {
    t: RedfishTarget,
}

/// One client per way of checking certificates (they keep connections open between calls).
fn client(insecure: bool, ca: Option<&PathBuf>) -> Result<reqwest::Client, PowerError> {
    type Key = (bool, Option<PathBuf>);
    static CLIENTS: OnceLock<Mutex<HashMap<Key, reqwest::Client>>> = OnceLock::new();
    let key = (insecure, ca.cloned());
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("wulfd/", env!("CARGO_PKG_VERSION")));
    if insecure {
        b = b.danger_accept_invalid_certs(true);
    } else if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| {
            PowerError::BadUri(format!("cannot read the CA file {} ({e})", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            PowerError::BadUri(format!(
                "the CA file {} holds no PEM certificate ({e})",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(PowerError::BadUri(format!(
                "the CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    let c = b
        .build()
        .map_err(|e| PowerError::Bmc(format!("cannot set up HTTPS: {e}")))?;
    clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, c.clone());
    Ok(c)
}

/// Every message in an error's chain, for telling certificate failures from the rest.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The message of a Redfish error body, if it has one.
fn redfish_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let err = v.get("error")?;
    let ext = err
        .get("@Message.ExtendedInfo")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|m| m.get("Message"))
        .and_then(Value::as_str);
    ext.or_else(|| err.get("message").and_then(Value::as_str))
        .map(str::to_string)
}

impl Redfish {
    pub fn new(t: RedfishTarget) -> Redfish {
        Redfish { t }
    }

    fn base(&self) -> String {
        format!("https://{}:{}", self.t.host, self.t.port)
    }

    fn transport(&self, e: reqwest::Error, timeout: Duration) -> PowerError {
        let text = chain(&e);
        let lower = text.to_ascii_lowercase();
        let addr = self.base();
        if lower.contains("certificate") || lower.contains("unknownissuer") {
            PowerError::Certificate(format!(
                "{addr}: {} (give the BMC's CA with ?ca=/path.pem, or ?insecure=1 to skip the \
                 check)",
                text.replace(&format!("{addr}/"), "/")
            ))
        } else if e.is_timeout() {
            PowerError::Timeout(format!("{addr}: no answer within {} s", timeout.as_secs()))
        } else {
            PowerError::Unreachable(format!("{addr}: {text}"))
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        timeout: Duration,
    ) -> Result<String, PowerError> {
        let resp = req
            .basic_auth(&self.t.user, Some(self.t.password.expose()))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport(e, timeout))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| self.transport(e, timeout))?;
        if status.is_success() {
            return Ok(body);
        }
        let msg = redfish_message(&body)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let detail = format!("{}: {what}: HTTP {status}{msg}", self.base());
        Err(match status.as_u16() {
            401 | 403 => PowerError::Login(detail),
            404 => PowerError::BadUri(detail),
            400 | 405 | 409 | 501 => PowerError::Refused(detail),
            _ => PowerError::Bmc(detail),
        })
    }

    async fn get(
        &self,
        c: &reqwest::Client,
        path: &str,
        timeout: Duration,
    ) -> Result<Value, PowerError> {
        let body = self
            .send(
                c.get(format!("{}{path}", self.base())),
                &format!("GET {path}"),
                timeout,
            )
            .await?;
        serde_json::from_str(&body).map_err(|e| {
            PowerError::Bmc(format!(
                "{}: GET {path} did not answer JSON ({e})",
                self.base()
            ))
        })
    }

    /// The path of the ComputerSystem: the URI's, or the only member of the collection.
    async fn system(&self, c: &reqwest::Client, timeout: Duration) -> Result<String, PowerError> {
        if let Some(id) = &self.t.system {
            let enc = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
            return Ok(format!("/redfish/v1/Systems/{enc}"));
        }
        let coll = self.get(c, "/redfish/v1/Systems", timeout).await?;
        let members: Vec<&str> = coll
            .get("Members")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        match members.as_slice() {
            [one] => Ok(one.trim_end_matches('/').to_string()),
            [] => Err(PowerError::Bmc(format!(
                "{}: /redfish/v1/Systems has no members",
                self.base()
            ))),
            many => {
                let ids: Vec<&str> = many
                    .iter()
                    .map(|m| m.trim_end_matches('/').rsplit('/').next().unwrap_or(m))
                    .collect();
                Err(PowerError::BadUri(format!(
                    "{} has {} systems ({}): name one, redfish://USER:PASS@{}:{}/SYSTEM_ID",
                    self.base(),
                    ids.len(),
                    ids.join(", "),
                    self.t.host,
                    self.t.port
                )))
            }
        }
    }

    fn state_of(&self, sys: &Value) -> Result<PowerState, PowerError> {
        match sys.get("PowerState").and_then(Value::as_str) {
            Some("On") | Some("PoweringOn") | Some("Paused") => Ok(PowerState::On),
            Some("Off") | Some("PoweringOff") => Ok(PowerState::Off),
            other => Err(PowerError::Bmc(format!(
                "{}: the system's PowerState is {}",
                self.base(),
                other.map_or("missing".to_string(), |s| format!("'{s}'"))
            ))),
        }
    }

    async fn reset(
        &self,
        c: &reqwest::Client,
        path: &str,
        sys: &Value,
        kind: &str,
        timeout: Duration,
    ) -> Result<(), PowerError> {
        let action = sys.pointer("/Actions/#ComputerSystem.Reset");
        let target = action
            .and_then(|a| a.get("target"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        let url = if target.starts_with("https://") {
            target.clone()
        } else {
            format!("{}{target}", self.base())
        };
        self.send(
            c.post(url).json(&serde_json::json!({ "ResetType": kind })),
            &format!("Reset {kind}"),
            timeout,
        )
        .await
        .map(|_| ())
    }
}

/// The reset types the system lists as allowed (empty when it does not say).
fn allowed(sys: &Value) -> Vec<String> {
    sys.pointer("/Actions/#ComputerSystem.Reset/ResetType@Redfish.AllowableValues")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Bmc for Redfish {
    async fn power(&self, op: BmcOp, timeout: Duration) -> Result<PowerState, PowerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let c = client(self.t.insecure, self.t.ca.as_ref())?;
        let path = self.system(&c, left()).await?;
        let sys = self.get(&c, &path, left()).await?;
        let now = self.state_of(&sys)?;
        let kind = match op {
            BmcOp::Status => return Ok(now),
            // Already there: nothing to ask (some BMCs refuse it).
            BmcOp::On | BmcOp::Off if op.target() == Some(now) => return Ok(now),
            BmcOp::On => "On",
            BmcOp::Off => "ForceOff",
            BmcOp::Reset => "ForceRestart",
            BmcOp::Cycle if allowed(&sys).iter().any(|a| a == "PowerCycle") => "PowerCycle",
            BmcOp::Cycle => {
                // Off, wait until the system says it is off, on.
                if now == PowerState::On {
                    self.reset(&c, &path, &sys, "ForceOff", left()).await?;
                    loop {
                        tokio::time::sleep(Duration::from_millis(500).min(left())).await;
                        if left().is_zero() {
                            return Err(PowerError::Timeout(format!(
                                "{}: still on {} s after ForceOff (cycle is ForceOff, then On)",
                                self.base(),
                                timeout.as_secs()
                            )));
                        }
                        let s = self.get(&c, &path, left()).await?;
                        if self.state_of(&s)? == PowerState::Off {
                            break;
                        }
                    }
                }
                "On"
            }
        };
        self.reset(&c, &path, &sys, kind, left()).await?;
        Ok(op.target().unwrap_or(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let b = r#"{"error": {"code": "Base.1.0.GeneralError", "message": "Power state Nmi is not supported",
            "@Message.ExtendedInfo": [{"Message": "Not supported here"}]}}"#;
        assert_eq!(redfish_message(b).as_deref(), Some("Not supported here"));
        let b = r#"{"error": {"code": "x", "message": "plain"}}"#;
        assert_eq!(redfish_message(b).as_deref(), Some("plain"));
        assert_eq!(redfish_message("<html>"), None);
    }

    #[test]
    fn allowable_values() {
        let sys = serde_json::json!({"Actions": {"#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "ForceRestart"]}}});
        assert_eq!(allowed(&sys), ["On", "ForceOff", "ForceRestart"]);
        assert!(allowed(&serde_json::json!({})).is_empty());
    }
}

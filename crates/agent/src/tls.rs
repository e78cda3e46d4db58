//! TLS to the heads, pinned to the cluster CA.
//!
//! A node learns the SHA-256 fingerprint of its cluster's CA certificate from its boot
//! (`wulf.ca=HEX` on the kernel command line, `ca=` in agent.conf). Before its first HTTPS
//! request the agent fetches the CA certificate over plain HTTP
//! (`http://HOST:PORT/boot/ca.pem`, the same port), keeps it only if its fingerprint is the
//! pinned one, and from then on checks every head's certificate against it: a head that
//! presents a certificate of another CA is refused, and the error names both fingerprints.
//! Only heads hold certificates of the cluster CA (its key is in the cluster's store), so a
//! head's certificate is accepted whatever address the node reached it at.
//!
//! An `https://` head with no pin is refused: the node would have nothing to check it with.
//! `http://` heads (a test head, a head of an older release) are spoken to in plain HTTP.

use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wulf_api::tls::ClientConfig;

/// The path of the CA certificate on a head's plain-HTTP port.
pub const CA_PATH: &str = "/boot/ca.pem";
/// Largest CA file read.
const MAX_PEM: u64 = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error(
        "{head} is an https:// head but this node has no pin of the cluster CA (wulf.ca= on \
         the kernel command line, ca= in agent.conf, or --ca): refusing to talk to a head it \
         cannot check"
    )]
    NoPin { head: String },
    #[error("cannot fetch the cluster CA from {url}: {message}")]
    Fetch { url: String, message: String },
    #[error(
        "the CA that {url} serves has SHA-256 {got}, not the cluster CA this node was booted \
         with (wulf.ca={want}): refusing to talk to that head"
    )]
    WrongCa {
        url: String,
        got: String,
        want: String,
    },
}

/// The pin and, once fetched and checked, the cluster CA's TLS settings.
#[derive(Debug, Default)]
pub struct Trust {
    pin: Option<String>,
    config: Mutex<Option<Arc<ClientConfig>>>,
}

static TRUST: OnceLock<Trust> = OnceLock::new();

/// Set the process's pin (at start, before any request). Later calls change nothing.
pub fn init(pin: Option<String>) {
    let _ = TRUST.set(Trust::new(pin));
}

/// The process's trust (no pin unless [`init`] set one).
pub fn trust() -> &'static Trust {
    TRUST.get_or_init(Trust::default)
}

/// `http://HOST:PORT` for a head's base URL (the port serves both).
fn plain(head: &str) -> String {
    match head.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => head.to_string(),
    }
}

impl Trust {
    pub fn new(pin: Option<String>) -> Trust {
        Trust {
            pin: pin.map(|p| wulf_api::tls::normalize_fingerprint(&p)),
            config: Mutex::new(None),
        }
    }

    /// The pinned fingerprint.
    pub fn pin(&self) -> Option<&str> {
        self.pin.as_deref()
    }

    /// The TLS settings for `head`: None for an http:// head; for an https:// head the
    /// cluster CA's, fetched from that head the first time and checked against the pin.
    pub fn for_head(&self, head: &str) -> Result<Option<Arc<ClientConfig>>, TlsError> {
        if !head.starts_with("https://") {
            return Ok(None);
        }
        let Some(pin) = &self.pin else {
            return Err(TlsError::NoPin {
                head: head.to_string(),
            });
        };
        let mut cached = self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cached.as_ref() {
            return Ok(Some(c.clone()));
        }
        let url = format!("{}{CA_PATH}", plain(head));
        let fetch = |message: String| TlsError::Fetch {
            url: url.clone(),
            message,
        };
        let resp = ureq::AgentBuilder::new()
            .timeout_connect(crate::send::CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(5))
            .build()
            .get(&url)
            .call()
            .map_err(|e| fetch(e.to_string()))?;
        let mut pem = Vec::new();
        resp.into_reader()
            .take(MAX_PEM)
            .read_to_end(&mut pem)
            .map_err(|e| fetch(e.to_string()))?;
        let certs = wulf_api::tls::parse_pem(&pem).map_err(|e| fetch(e.to_string()))?;
        let der = certs[0].as_ref();
        let got = wulf_api::tls::fingerprint(der);
        if &got != pin {
            return Err(TlsError::WrongCa {
                url,
                got,
                want: pin.clone(),
            });
        }
        // Exactly the pinned certificate, nothing else the file may hold.
        let one = certs[0].clone();
        let config = wulf_api::tls::trust_cluster_der(one).map_err(|e| fetch(e.to_string()))?;
        tracing::info!("cluster CA {got} fetched from {url}; heads are checked against it");
        *cached = Some(config.clone());
        Ok(Some(config))
    }

    /// An HTTP agent from `b` for talking to `head`.
    pub fn agent(&self, head: &str, b: ureq::AgentBuilder) -> Result<ureq::Agent, TlsError> {
        Ok(match self.for_head(head)? {
            Some(c) => b.tls_config(c).build(),
            None => b.build(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_heads_need_a_pin() {
        let t = Trust::new(None);
        assert!(t.for_head("http://h:1").unwrap().is_none());
        assert_eq!(
            t.for_head("https://h:1").unwrap_err(),
            TlsError::NoPin {
                head: "https://h:1".into()
            }
        );
        assert_eq!(plain("https://h:1"), "http://h:1");
    }

    #[test]
    fn an_unreachable_head_is_a_fetch_error() {
        let t = Trust::new(Some("AB:cd".into()));
        assert_eq!(t.pin(), Some("abcd"));
        let e = t.for_head("https://127.0.0.1:1").unwrap_err();
        assert!(
            matches!(&e, TlsError::Fetch { url, .. } if url == "http://127.0.0.1:1/boot/ca.pem"),
            "{e}"
        );
    }
}

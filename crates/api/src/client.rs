//! A small blocking client for the wulf REST API.

use std::io::Read;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ErrorBody;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The head answered with an error status.
    #[error("{message}")]
    Status {
        status: u16,
        message: String,
        field: Option<String>,
    },
    /// The head could not be reached or the connection failed.
    #[error("cannot reach the head at {url}: {message}")]
    Transport { url: String, message: String },
    /// The head's answer could not be read.
    #[error("bad response from the head: {0}")]
    Decode(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one head.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Percent-encode a query-string value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `base` is the head's URL, like `https://10.0.0.1:8740`. An https head's certificate is
    /// checked against the public roots: use [`Client::with_tls`] for a cluster CA.
    pub fn new(base: &str, token: Option<String>) -> Client {
        Self::with_agent(base, token, Self::builder().build())
    }

    /// A client whose TLS is `tls`: [`crate::tls::trust_ca`] (exactly the cluster CA) or
    /// [`crate::tls::insecure`].
    pub fn with_tls(
        base: &str,
        token: Option<String>,
        tls: std::sync::Arc<crate::tls::ClientConfig>,
    ) -> Client {
        Self::with_agent(base, token, Self::builder().tls_config(tls).build())
    }

    /// The HTTP agent settings every client starts from (timeouts).
    pub fn builder() -> ureq::AgentBuilder {
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(Duration::from_secs(600))
            .timeout_write(Duration::from_secs(600))
    }

    /// A client on `base` trusting exactly the CA certificate(s) in `ca_pem`.
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        ca_pem: &[u8],
    ) -> Result<Client, crate::tls::TlsError> {
        Ok(Self::with_tls(base, token, crate::tls::trust_ca(ca_pem)?))
    }

    /// A client on `base` that checks no certificate (`--insecure`).
    pub fn insecure(base: &str, token: Option<String>) -> Client {
        Self::with_tls(base, token, crate::tls::insecure())
    }

    /// A client on an existing HTTP agent (to share its connections), e.g. one per node
    /// token over a few connections.
    pub fn with_agent(base: &str, token: Option<String>, agent: ureq::Agent) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = self.agent.request(method, &self.url(path));
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    fn finish(&self, r: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response, ApiError> {
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let (message, field) = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => (b.error, b.field),
                    Err(_) if text.trim().is_empty() => (format!("HTTP {status}"), None),
                    Err(_) => (format!("HTTP {status}: {}", text.trim()), None),
                };
                Err(ApiError::Status {
                    status,
                    message,
                    field,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(ApiError::Transport {
                url: self.base.clone(),
                message: t.to_string(),
            }),
        }
    }

    fn json<T: DeserializeOwned>(resp: ureq::Response) -> Result<T, ApiError> {
        let mut body = Vec::new();
        resp.into_reader()
            .read_to_end(&mut body)
            .map_err(|e| ApiError::Decode(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// GET a JSON document.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let r = self.finish(self.request("GET", path).call())?;
        Self::json(r)
    }

    /// Send a JSON body with `method` and read a JSON answer.
    pub fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Decode(e.to_string()))?;
        let r = self.finish(
            self.request(method, path)
                .set("Content-Type", "application/json")
                .send_bytes(&bytes),
        )?;
        Self::json(r)
    }

    /// DELETE with no body.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let r = self.finish(self.request("DELETE", path).call())?;
        Self::json(r)
    }

    /// PUT a stream of `len` bytes (a file upload) and read a JSON answer.
    pub fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Read,
        len: u64,
    ) -> Result<T, ApiError> {
        let r = self.finish(
            self.request("PUT", path)
                .set("Content-Type", "application/octet-stream")
                .set("Content-Length", &len.to_string())
                .send(body),
        )?;
        Self::json(r)
    }

    /// GET a file; returns its length (if the head said) and a reader over the body.
    pub fn download(&self, path: &str) -> Result<(Option<u64>, Box<dyn Read + Send>), ApiError> {
        let r = self.finish(self.request("GET", path).call())?;
        let len = r.header("Content-Length").and_then(|v| v.parse().ok());
        Ok((len, Box::new(r.into_reader())))
    }
}

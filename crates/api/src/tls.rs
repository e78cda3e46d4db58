//! TLS to a head: trust exactly the cluster CA (PEM), or check nothing (`--insecure`).
//!
//! Every head of a cluster presents a certificate signed by the cluster CA, and sends the CA
//! certificate after its own, so a failed check can say which CA the head presented.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

pub use rustls::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("not a usable CA certificate: {0}")]
    BadCa(String),
}

/// The SHA-256 of a certificate's DER, in lower-case hex (the form `wulf.ca=` and
/// `wulf trust --fingerprint` take).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A fingerprint as people write it (upper case, `:` between bytes, `sha256:` in front),
/// normalised to lower-case hex without separators.
pub fn normalize_fingerprint(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("SHA256:"))
        .unwrap_or(s);
    s.chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The certificates of a PEM text (at least one).
pub fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    // The ring provider supports the safe default versions: this cannot fail.
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
}

/// Checks a head's certificate against the CA certificates it was given.
#[derive(Debug)]
struct CaVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// Fingerprints of the trusted CA certificates.
    trusted: Vec<String>,
    /// Accept a certificate of the CA whatever names it is for (a node's view: only heads
    /// hold certificates of the cluster CA).
    any_name: bool,
}

#[derive(Debug)]
struct Why(String);

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Why {}

/// What starts the text of a certificate this module refused.
const REFUSED: &str = "certificate refused: ";

fn other(msg: String) -> rustls::Error {
    rustls::Error::Other(rustls::OtherError(Arc::new(Why(format!("{REFUSED}{msg}")))))
}

/// The subject of a DER certificate, for messages.
fn subject(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The issuer of a DER certificate, for messages.
fn issuer(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.issuer().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match r {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.any_name => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            )) => {
                let presented = match intermediates.last() {
                    Some(ca) => format!(
                        "CA '{}' (SHA-256 {})",
                        subject(ca.as_ref()),
                        fingerprint(ca.as_ref())
                    ),
                    None => format!("a certificate issued by '{}'", issuer(end_entity.as_ref())),
                };
                Err(other(format!(
                    "the head's certificate is not signed by the trusted cluster CA: the head \
                     presents {presented}, the trusted CA is SHA-256 {}",
                    self.trusted.join(" or ")
                )))
            }
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Err(other(format!(
                "the head's certificate (signed by the trusted CA) is not for the name '{}' \
                 (add it to the head's [tls] names, or use a name or address the certificate \
                 has)",
                server_name.to_str()
            ))),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn verifier(ca_pem: &[u8], any_name: bool) -> Result<CaVerifier, TlsError> {
    verifier_of(parse_pem(ca_pem)?, any_name)
}

fn verifier_of(
    certs: Vec<CertificateDer<'static>>,
    any_name: bool,
) -> Result<CaVerifier, TlsError> {
    let mut roots = RootCertStore::empty();
    let trusted = certs.iter().map(|c| fingerprint(c.as_ref())).collect();
    for c in certs {
        roots.add(c).map_err(|e| TlsError::BadCa(e.to_string()))?;
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    Ok(CaVerifier {
        inner,
        trusted,
        any_name,
    })
}

/// TLS that trusts exactly the CA certificate(s) in `ca_pem` and checks the head's name (the
/// CLI's view).
pub fn trust_ca(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let v = verifier(ca_pem, false)?;
    Ok(Arc::new(
        builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(v))
            .with_no_client_auth(),
    ))
}

/// TLS that trusts exactly the cluster CA in `ca_pem`, whatever name the head's certificate
/// is for (a node's view: it reaches heads by addresses its boot gave it, and only heads hold
/// certificates of the cluster CA).
pub fn trust_cluster_ca(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    trust_cluster_der(
        parse_pem(ca_pem)?
            .into_iter()
            .next()
            .ok_or(TlsError::NoCertificate)?,
    )
}

/// [`trust_cluster_ca`] for one DER certificate.
pub fn trust_cluster_der(ca: CertificateDer<'static>) -> Result<Arc<ClientConfig>, TlsError> {
    let v = verifier_of(vec![ca], true)?;
    Ok(Arc::new(
        builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(v))
            .with_no_client_auth(),
    ))
}

/// Accepts any certificate (`--insecure`); handshake signatures are still checked.
#[derive(Debug)]
struct NoVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS that checks no certificate at all: anyone on the path can read and change the
/// session. Only for `--insecure`.
pub fn insecure() -> Arc<ClientConfig> {
    Arc::new(
        builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerifier(provider())))
            .with_no_client_auth(),
    )
}

/// What was wrong with the head's certificate, when a transport error's text says it was
/// refused.
pub fn certificate_problem(message: &str) -> Option<&str> {
    [REFUSED, "invalid peer certificate: "]
        .iter()
        .find_map(|m| message.find(m).map(|i| &message[i + m.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_found_in_transport_errors() {
        let e = other("x y".into()).to_string();
        assert_eq!(
            certificate_problem(&format!("u: Connection Failed: {e}")),
            Some("x y")
        );
        assert_eq!(
            certificate_problem("tls: invalid peer certificate: Expired"),
            Some("Expired")
        );
        assert_eq!(certificate_problem("connection refused"), None);
    }

    #[test]
    fn fingerprints_normalise() {
        assert_eq!(normalize_fingerprint(" SHA256:AB:cd:0F "), "abcd0f");
        assert_eq!(normalize_fingerprint("abcd"), "abcd");
    }

    #[test]
    fn pem_without_a_certificate_is_refused() {
        assert!(parse_pem(b"hello").is_err());
        assert!(trust_ca(b"").is_err());
        insecure();
    }
}

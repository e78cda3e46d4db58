//! HTTPS with a cluster CA. On a new cluster the first head to start makes the cluster CA
//! (ECDSA P-256) and keeps its certificate and private key in the store, so every head of the
//! cluster signs its own head certificate with the same CA. At every start a head issues
//! itself a fresh head certificate (one year) for its names and addresses, and writes
//! `DATA/tls/ca.pem`, `DATA/tls/head.pem` and `DATA/tls/head.key` (0600) for admins and the
//! CLI. The API port serves TLS and plain HTTP on one socket (see [`crate::sendfile`]); plain
//! HTTP may only reach the firmware routes under `/boot/` ([`require_tls`]).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wulf_store::{Expect, Store, StoreError};

use crate::web::{ApiErr, Conn};

/// Store key of the cluster CA (certificate and private key, PEM, as JSON).
pub const CA_KEY: &str = "/wulf/secret/tls-ca";
/// The directory under the data directory the certificate files go to.
pub const TLS_DIR: &str = "tls";
/// A TLS handshake must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a head certificate is valid.
const HEAD_CERT_DAYS: i64 = 365;
/// How long a new cluster CA is valid.
const CA_DAYS: i64 = 20 * 365;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the cluster CA in the store ({CA_KEY}) cannot be used: {0}")]
    BadStoredCa(String),
    #[error("[tls] names: '{0}' is neither an IP address nor a DNS name")]
    BadName(String),
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot write {path}: {err}")]
    Write { path: String, err: std::io::Error },
    #[error("{0}")]
    BadInput(String),
}

/// The cluster CA as the store keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCa {
    /// The CA certificate, PEM.
    pub cert: String,
    /// Its private key, PEM (PKCS#8).
    pub key: String,
}

impl StoredCa {
    /// A new self-signed CA for cluster `cluster`.
    pub fn generate(cluster: &str) -> Result<StoredCa, TlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "wulf");
        dn.push(DnType::OrganizationalUnitName, cluster);
        dn.push(DnType::CommonName, "wulf cluster CA");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.serial_number = Some(serial());
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(CA_DAYS);
        let cert = p.self_signed(&key)?;
        Ok(StoredCa {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A CA from PEM files an admin brings (`wulfd replace-ca --cert --key`): checked to be
    /// a CA certificate whose public key matches the key.
    pub fn from_pem(cert: &str, key: &str) -> Result<StoredCa, TlsError> {
        let ca = StoredCa {
            cert: cert.to_string(),
            key: key.to_string(),
        };
        let der = ca.der()?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| TlsError::BadInput(format!("not an X.509 certificate: {e}")))?;
        if !x509.is_ca() {
            return Err(TlsError::BadInput(
                "the certificate is not a CA certificate (basicConstraints CA:TRUE)".into(),
            ));
        }
        let kp = KeyPair::from_pem(key)
            .map_err(|e| TlsError::BadInput(format!("cannot read the private key: {e}")))?;
        if x509.public_key().subject_public_key.data.as_ref() != kp.der_bytes() {
            return Err(TlsError::BadInput(
                "the private key does not belong to the certificate".into(),
            ));
        }
        Ok(ca)
    }

    /// The certificate's DER.
    pub fn der(&self) -> Result<CertificateDer<'static>, TlsError> {
        CertificateDer::from_pem_slice(self.cert.as_bytes())
            .map_err(|e| TlsError::BadStoredCa(format!("certificate: {e}")))
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, TlsError> {
        let key = KeyPair::from_pem(&self.key).map_err(|e| TlsError::BadStoredCa(e.to_string()))?;
        Issuer::from_ca_cert_pem(&self.cert, key).map_err(|e| TlsError::BadStoredCa(e.to_string()))
    }
}

fn serial() -> SerialNumber {
    let mut b = rand::random::<[u8; 16]>();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

/// The SHA-256 of a certificate's DER, in lower-case hex (what `wulf.ca=` carries).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Read the cluster CA, creating it on a new cluster (safe to race: the first head's wins).
pub async fn cluster_ca(store: &dyn Store, cluster: &str) -> Result<StoredCa, TlsError> {
    let parse = |v: &[u8]| {
        serde_json::from_slice::<StoredCa>(v).map_err(|e| TlsError::BadStoredCa(e.to_string()))
    };
    if let Some(kv) = store.get(CA_KEY).await? {
        return parse(&kv.value);
    }
    let fresh = StoredCa::generate(cluster)?;
    let bytes = serde_json::to_vec(&fresh).map_err(|e| TlsError::BadStoredCa(e.to_string()))?;
    match store.put(CA_KEY, bytes, Expect::Absent).await {
        Ok(_) => {
            tracing::info!(target: "audit", "created the cluster CA");
            Ok(fresh)
        }
        Err(StoreError::Conflict { .. }) => match store.get(CA_KEY).await? {
            Some(kv) => parse(&kv.value),
            None => Err(TlsError::BadStoredCa("the cluster CA vanished".into())),
        },
        Err(e) => Err(e.into()),
    }
}

/// Put `ca` in the store in place of the cluster CA (`wulfd replace-ca`).
pub async fn replace_ca(store: &dyn Store, ca: &StoredCa) -> Result<(), TlsError> {
    let bytes = serde_json::to_vec(ca).map_err(|e| TlsError::BadStoredCa(e.to_string()))?;
    store.put(CA_KEY, bytes, Expect::Any).await?;
    Ok(())
}

/// `wulfd replace-ca [--cert FILE --key FILE]`.
pub async fn replace_ca_command(
    cfg: &crate::config::Config,
    files: Option<(&Path, &Path)>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let ca = match files {
        Some((cert, key)) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            StoredCa::from_pem(&read(cert)?, &read(key)?)
                .with_context(|| format!("{} and {}", cert.display(), key.display()))?
        }
        None => StoredCa::generate(&cfg.cluster_name)?,
    };
    let data_dir = cfg.data_dir.canonicalize().unwrap_or(cfg.data_dir.clone());
    let store = crate::open_store(cfg, &data_dir)
        .await
        .context("cannot open the store (with the embedded store, stop wulfd first)")?;
    replace_ca(store.as_ref(), &ca).await?;
    let fp = fingerprint(&ca.der()?);
    tracing::info!(target: "audit", ca = %fp, "replaced the cluster CA");
    println!(
        "the cluster CA is now SHA-256 {fp}: restart every head, give CLIs the new \
         DATA_DIR/tls/ca.pem (wulf trust), reboot the nodes"
    );
    Ok(())
}

/// The names a head certificate is for: the head's names, localhost, the loopback
/// addresses, every interface address, and `extra` (`[tls] names`).
pub fn head_names(hosts: &[String], extra: &[String]) -> Result<Vec<SanType>, TlsError> {
    let mut out: Vec<SanType> = Vec::new();
    let mut push = |s: SanType| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for h in hosts {
        match rcgen::string::Ia5String::try_from(h.as_str()) {
            Ok(n) if !h.is_empty() && h.parse::<IpAddr>().is_err() => push(SanType::DnsName(n)),
            _ => tracing::debug!(name = %h, "not a DNS name; left out of the head certificate"),
        }
    }
    if let Ok(n) = rcgen::string::Ia5String::try_from("localhost") {
        push(SanType::DnsName(n));
    }
    push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    for i in if_addrs::get_if_addrs().unwrap_or_default() {
        push(SanType::IpAddress(i.ip()));
    }
    for e in extra {
        let e = e.trim();
        if let Ok(ip) = e.parse::<IpAddr>() {
            push(SanType::IpAddress(ip));
            continue;
        }
        let valid = !e.is_empty()
            && e.len() <= 253
            && e.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
            });
        match rcgen::string::Ia5String::try_from(e) {
            Ok(n) if valid => push(SanType::DnsName(n)),
            _ => return Err(TlsError::BadName(e.to_string())),
        }
    }
    Ok(out)
}

/// A head certificate (PEM) and its new key (PEM), signed by `ca`.
pub fn issue_head_cert(
    ca: &StoredCa,
    head: &str,
    names: Vec<SanType>,
) -> Result<(String, String), TlsError> {
    let issuer = ca.issuer()?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, head);
    p.distinguished_name = dn;
    p.subject_alt_names = names;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(serial());
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(HEAD_CERT_DAYS);
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// This head's TLS: the cluster CA it presents a certificate from, and the acceptor.
pub struct Tls {
    /// The cluster CA certificate, PEM (served at `/boot/ca.pem`).
    pub ca_pem: String,
    /// SHA-256 of the CA certificate's DER, hex (`wulf.ca=`).
    pub fingerprint: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// Set up this head's TLS: the cluster CA (made if the cluster has none), a fresh head
/// certificate, the files in `DATA/tls/`, the acceptor.
pub async fn setup(
    store: &dyn Store,
    data_dir: &Path,
    cluster: &str,
    hosts: &[String],
    extra: &[String],
) -> Result<Tls, TlsError> {
    // Bad names are a configuration error: say so before touching the store.
    let names = head_names(hosts, extra)?;
    let ca = cluster_ca(store, cluster).await?;
    let ca_der = ca.der()?;
    let head = hosts.first().map(String::as_str).unwrap_or("head");
    let (cert_pem, key_pem) = issue_head_cert(&ca, head, names)?;
    let dir = data_dir.join(TLS_DIR);
    std::fs::create_dir_all(&dir).map_err(|err| TlsError::Write {
        path: dir.display().to_string(),
        err,
    })?;
    write_file(&dir.join("ca.pem"), ca.cert.as_bytes(), 0o644)?;
    write_file(&dir.join("head.key"), key_pem.as_bytes(), 0o600)?;
    write_file(&dir.join("head.pem"), cert_pem.as_bytes(), 0o644)?;
    let fingerprint = fingerprint(&ca_der);
    let acceptor = acceptor(&cert_pem, &key_pem, ca_der)?;
    tracing::info!(ca = %fingerprint, dir = %dir.display(), "head certificate issued by the cluster CA");
    Ok(Tls {
        ca_pem: ca.cert,
        fingerprint,
        acceptor,
    })
}

/// A TLS acceptor presenting the head certificate and the CA after it.
fn acceptor(
    cert_pem: &str,
    key_pem: &str,
    ca_der: CertificateDer<'static>,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| TlsError::BadInput(format!("head certificate: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::BadInput(format!("head key: {e}")))?,
    );
    // AES-128-GCM with SHA-256 first, in the head's order rather than the client's (rustls
    // and OpenSSL clients ask for AES-256-GCM with SHA-384 first): every report is a new,
    // resumed connection, and its key schedule's SHA-384 HMACs took about 9 % of the head's
    // CPU per report (bench/status.sh profile); SHA-256 costs less.
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert, ca_der], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ignore_client_order = true;
    // Stateless session tickets: an agent's next report (a new connection) resumes without
    // the certificate signature, for any number of nodes (the default stateful cache holds
    // 256 sessions).
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Write `data` to `path` with `mode`, whole or not at all (a temporary file renamed).
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |err| TlsError::Write {
        path: path.display().to_string(),
        err,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// Middleware: a request that came over plain HTTP may only reach `/boot/…` (what firmware
/// fetches); anything else gets 403 naming the https:// URL to use.
pub async fn require_tls(req: Request, next: Next) -> Response {
    let tls = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .is_some_and(|c| c.0.tls);
    let path = req.uri().path();
    if tls || path.starts_with("/boot/") {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("HEAD:8740");
    let target = req
        .uri()
        .path_and_query()
        .map_or(path, |p| p.as_str())
        .to_string();
    ApiErr::new(
        StatusCode::FORBIDDEN,
        format!(
            "the API needs HTTPS: use https://{host}{target} (plain HTTP serves only /boot/; \
             the cluster CA is at http://{host}/boot/ca.pem, `wulf trust` installs it)"
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_certificates_chain_to_the_ca() {
        let ca = StoredCa::generate("test").unwrap();
        let names = head_names(
            &["h1".into()],
            &["head.example.org".into(), "10.9.8.7".into()],
        )
        .unwrap();
        assert!(names.contains(&SanType::IpAddress("10.9.8.7".parse().unwrap())));
        assert!(names.contains(&SanType::IpAddress("::1".parse().unwrap())));
        let (cert, key) = issue_head_cert(&ca, "h1", names).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ca_der = ca.der().unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(x.issuer(), c.subject());
        assert!(x.verify_signature(Some(c.public_key())).is_ok());
        assert!(!x.is_ca() && c.is_ca());
        acceptor(&cert, &key, ca.der().unwrap()).unwrap();
        // A CA brought by the admin is checked.
        assert!(StoredCa::from_pem(&ca.cert, &ca.key).is_ok());
        let other = StoredCa::generate("other").unwrap();
        assert!(StoredCa::from_pem(&ca.cert, &other.key).is_err());
        assert!(StoredCa::from_pem(&cert, &key).is_err(), "not a CA");
        assert_eq!(fingerprint(&ca.der().unwrap()).len(), 64);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a b", "x..y", "é.example"] {
            assert!(head_names(&[], &[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(
            head_names(&["not a name".into()], &[]).is_ok(),
            "host names are skipped"
        );
    }
}

//! `wulf trust URL`: fetch a cluster's CA certificate from a head, show it, and once the
//! admin confirms it (its fingerprint, `--yes`, or a terminal prompt) keep it in
//! `~/.config/wulf/ca.pem`, where the CLI looks for it.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use clap::Args;

use crate::args::Cli;
use crate::fail::{usage, Fail};

/// Largest CA file accepted.
const MAX_PEM: u64 = 64 * 1024;

#[derive(Args, Debug)]
pub(crate) struct TrustArgs {
    /// The head, like https://head1:8740, head1:8740 or head1 (port 8740). The CA is fetched
    /// over plain HTTP from http://HOST:PORT/boot/ca.pem: check its fingerprint
    url: String,
    /// The SHA-256 fingerprint the CA must have (hex, colons and case ignored; on the head:
    /// `openssl x509 -in DATA_DIR/tls/ca.pem -noout -fingerprint -sha256`)
    #[arg(long, value_name = "HEX")]
    fingerprint: Option<String>,
    /// Trust the CA without comparing its fingerprint
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `http://HOST:PORT/boot/ca.pem` and `https://HOST:PORT` for what the admin typed.
fn urls(given: &str) -> Result<(String, String), Fail> {
    let g = given.trim();
    let rest = match g.split_once("://") {
        Some(("http" | "https", r)) => r,
        Some((s, _)) => {
            return Err(usage(format!(
                "'{g}': expected an http:// or https:// URL, not {s}://"
            )))
        }
        None => g,
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    if hostport.is_empty() || hostport.contains(char::is_whitespace) {
        return Err(usage(format!(
            "'{g}' names no head: give one like https://head1:8740"
        )));
    }
    let has_port = match hostport.rsplit_once(':') {
        // An IPv6 literal has colons inside its brackets.
        Some((h, p)) => (h.ends_with(']') || !h.starts_with('[')) && p.parse::<u16>().is_ok(),
        None => false,
    };
    let hostport = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", 8740)
    };
    Ok((
        format!("http://{hostport}/boot/ca.pem"),
        format!("https://{hostport}"),
    ))
}

pub(crate) fn run(_cli: &Cli, a: &TrustArgs) -> Result<(), Fail> {
    let (ca_url, https) = urls(&a.url)?;
    let want = a
        .fingerprint
        .as_deref()
        .map(wulf_api::tls::normalize_fingerprint);
    if let Some(w) = &want {
        if w.len() != 64 || !w.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(usage(format!(
                "--fingerprint '{}' is not a SHA-256 fingerprint (64 hex digits)",
                a.fingerprint.as_deref().unwrap_or_default()
            )));
        }
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(20))
        .build();
    let resp = agent
        .get(&ca_url)
        .call()
        .map_err(|e| anyhow::anyhow!("cannot fetch the cluster CA from {ca_url}: {e}"))?;
    let mut pem = Vec::new();
    resp.into_reader()
        .take(MAX_PEM + 1)
        .read_to_end(&mut pem)
        .with_context(|| format!("reading {ca_url}"))?;
    if pem.len() as u64 > MAX_PEM {
        return Err(anyhow::anyhow!(
            "{ca_url} is larger than {MAX_PEM} bytes: not a CA certificate"
        )
        .into());
    }
    let certs = wulf_api::tls::parse_pem(&pem).map_err(|e| anyhow::anyhow!("{ca_url}: {e}"))?;
    if certs.len() != 1 {
        return Err(anyhow::anyhow!(
            "{ca_url} holds {} certificates, not the one CA certificate a head serves; nothing \
             written",
            certs.len()
        )
        .into());
    }
    let der = certs[0].as_ref();
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("{ca_url}: not an X.509 certificate: {e}"))?;
    if !cert.is_ca() {
        return Err(anyhow::anyhow!("{ca_url} is not a CA certificate; nothing written").into());
    }
    let fp = wulf_api::tls::fingerprint(der);
    let colons: Vec<String> = der_fp_bytes(&fp);
    println!("CA from {ca_url}");
    println!("  subject:     {}", cert.subject());
    println!("  valid until: {}", cert.validity().not_after);
    println!("  SHA-256:     {fp}");
    println!("               ({})", colons.join(":"));
    match (&want, a.yes) {
        (Some(w), _) if *w != fp => {
            return Err(anyhow::anyhow!(
                "the CA's fingerprint is {fp}, not {w}: this may not be your cluster's CA (or \
                 someone on the path replaced it); nothing written"
            )
            .into())
        }
        (Some(_), _) | (None, true) => {}
        (None, false) if std::io::stdin().is_terminal() => {
            eprint!(
                "Compare this fingerprint with the head's (openssl x509 -in \
                 DATA_DIR/tls/ca.pem -noout -fingerprint -sha256). Trust it? [y/N] "
            );
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the answer")?;
            if !matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
                return Err(anyhow::anyhow!("not trusted; nothing written").into());
            }
        }
        (None, false) => {
            return Err(usage(
                "give --fingerprint HEX (the head's: openssl x509 -in DATA_DIR/tls/ca.pem \
                 -noout -fingerprint -sha256) or --yes to trust this CA; nothing written",
            ))
        }
    }
    let path = crate::conn::trusted_ca_path()
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find ~/.config/wulf"))?;
    write_ca(&path, &pem)?;
    println!("trusted: wrote {}", path.display());
    // Say now, not at the first command, when the head's certificate will not do.
    if let Ok(tls) = wulf_api::tls::trust_ca(&pem) {
        let c = wulf_api::Client::with_tls(&https, None, tls);
        if let Err(wulf_api::ApiError::Transport { message, .. }) =
            c.get::<serde_json::Value>("/info")
        {
            eprintln!("wulf: warning: {https} does not pass the check with this CA: {message}");
        }
    }
    Ok(())
}

fn der_fp_bytes(hex: &str) -> Vec<String> {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
        .collect()
}

/// Write the CA file (0644) in its directory (0700), whole or not at all.
fn write_ca(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("the CA path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_urls() {
        let u = |s: &str| urls(s).ok().map(|(a, b)| format!("{a} {b}"));
        assert_eq!(
            u("https://h:1/x").as_deref(),
            Some("http://h:1/boot/ca.pem https://h:1")
        );
        assert_eq!(
            u("h").as_deref(),
            Some("http://h:8740/boot/ca.pem https://h:8740")
        );
        assert_eq!(
            u("[::1]:9").as_deref(),
            Some("http://[::1]:9/boot/ca.pem https://[::1]:9")
        );
        assert!(urls("ftp://h").is_err());
        assert!(urls("https://").is_err());
    }
}

//! Downloads of a boot storm, each from the node's own address: TFTP (the PXE loader) and
//! HTTP(S) (boot script, kernel, initramfs, image, enrollment). ureq cannot choose the
//! source address of its connections, so this is a small HTTP/1.1 client over a socket
//! bound to the node's address (TLS by rustls with the CLI's trust).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What a download got.
pub struct Got {
    pub status: u16,
    pub bytes: u64,
    /// The body's SHA-256 (lower-case hex).
    pub sha256: String,
    /// The body, when asked to keep it.
    pub body: Vec<u8>,
}

fn left(deadline: Instant) -> anyhow::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        anyhow::bail!("out of time");
    }
    Ok(d.min(Duration::from_secs(60)))
}

/// TFTP RRQ of `file` (octet, with tsize and blksize, as PXE ROMs ask) from `server` port
/// 69, from `local`; the whole file, checked against the size the server's OACK gave.
pub fn tftp(
    local: Ipv4Addr,
    server: Ipv4Addr,
    file: &str,
    deadline: Instant,
) -> anyhow::Result<Got> {
    const BLKSIZE: usize = 1432;
    let bind = || {
        UdpSocket::bind(SocketAddrV4::new(local, 0))
            .map_err(|e| anyhow::anyhow!("cannot bind a TFTP socket to {local}: {e}"))
    };
    let mut sock = bind()?;
    let mut rrq = vec![0, 1];
    for part in [file, "octet", "tsize", "0", "blksize", &BLKSIZE.to_string()] {
        rrq.extend_from_slice(part.as_bytes());
        rrq.push(0);
    }
    let to = SocketAddr::from(SocketAddrV4::new(server, 69));
    let mut peer: Option<SocketAddr> = None;
    let mut last = rrq.clone();
    let mut blksize = 512usize;
    let mut tsize: Option<u64> = None;
    let mut expect: u16 = 1;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut silent = 0;
    let mut buf = vec![0u8; 65536];
    sock.send_to(&rrq, to)?;
    loop {
        sock.set_read_timeout(Some(left(deadline)?.min(Duration::from_secs(2))))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                silent += 1;
                // PXE ROMs keep asking; the node's time limit ends it.
                if Instant::now() >= deadline {
                    anyhow::bail!("TFTP {file} from {server}: no answer after {silent} tries ({bytes} bytes received)");
                }
                if silent >= 5 {
                    // The transfer went quiet (the server gave it up, or dropped the
                    // request): start over from a new port, as firmware does.
                    sock = bind()?;
                    (peer, last, blksize, tsize, expect) = (None, rrq.clone(), 512, None, 1);
                    (hasher, bytes, silent) = (Sha256::new(), 0, 0);
                }
                sock.send_to(&last, peer.unwrap_or(to))?;
                continue;
            }
            Err(e) => anyhow::bail!("TFTP {file} from {server}: {e}"),
        };
        if peer.is_some_and(|p| p != from) || n < 4 {
            continue;
        }
        peer = Some(from);
        silent = 0;
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        match op {
            6 => {
                // OACK: option pairs.
                let parts: Vec<String> = buf[2..n]
                    .split(|b| *b == 0)
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect();
                for kv in parts.chunks(2) {
                    if let [k, v] = kv {
                        match k.as_str() {
                            "blksize" => blksize = v.parse().unwrap_or(512),
                            "tsize" => tsize = v.parse().ok(),
                            _ => {}
                        }
                    }
                }
                last = vec![0, 4, 0, 0];
                sock.send_to(&last, from)?;
            }
            3 => {
                let block = u16::from_be_bytes([buf[2], buf[3]]);
                let data = &buf[4..n];
                if block == expect {
                    hasher.update(data);
                    bytes += data.len() as u64;
                    expect = expect.wrapping_add(1);
                }
                last = vec![0, 4, buf[2], buf[3]];
                sock.send_to(&last, from)?;
                if block == expect.wrapping_sub(1) && data.len() < blksize {
                    if let Some(t) = tsize.filter(|t| *t != bytes) {
                        anyhow::bail!(
                            "TFTP {file}: {bytes} bytes received, the server announced {t}"
                        );
                    }
                    return Ok(Got {
                        status: 200,
                        bytes,
                        sha256: hex::encode(hasher.finalize()),
                        body: Vec::new(),
                    });
                }
            }
            5 => {
                let msg = String::from_utf8_lossy(&buf[4..n])
                    .trim_end_matches('\0')
                    .to_string();
                anyhow::bail!(
                    "TFTP {file} from {server}: error {}: {msg}",
                    u16::from_be_bytes([buf[2], buf[3]])
                );
            }
            _ => {}
        }
    }
}

/// A URL's scheme, host, port and path.
fn split_url(url: &str) -> anyhow::Result<(bool, String, u16, String)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        anyhow::bail!("'{url}' is not an http:// or https:// URL");
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse()
                .map_err(|_| anyhow::anyhow!("bad port in URL '{url}'"))?,
        ),
        None => (hostport.to_string(), if tls { 443 } else { 80 }),
    };
    Ok((tls, host, port, path.to_string()))
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// One HTTP/1.1 request from `local` (Connection: close). The body is hashed as it arrives
/// and kept only with `keep`. `tls` is needed for https:// URLs.
#[allow(clippy::too_many_arguments)]
pub fn http(
    local: Ipv4Addr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    tls: Option<&Arc<wulf_api::tls::ClientConfig>>,
    keep: bool,
    deadline: Instant,
) -> anyhow::Result<Got> {
    let (secure, host, port, path) = split_url(url)?;
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| anyhow::anyhow!("'{host}' in '{url}' is not an IP address"))?;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddrV4::new(local, 0).into())
        .map_err(|e| anyhow::anyhow!("cannot bind to {local}: {e}"))?;
    sock.connect_timeout(
        &SocketAddr::new(ip, port).into(),
        left(deadline)?.min(Duration::from_secs(10)),
    )
    .map_err(|e| anyhow::anyhow!("{method} {url}: cannot connect: {e}"))?;
    let tcp: TcpStream = sock.into();
    tcp.set_nodelay(true)?;
    let t = left(deadline)?;
    tcp.set_read_timeout(Some(t))?;
    tcp.set_write_timeout(Some(t))?;
    let mut stream: Box<dyn Stream> = if secure {
        let cfg = tls.ok_or_else(|| anyhow::anyhow!("{url}: https needs the cluster CA"))?;
        let name = rustls::pki_types::ServerName::from(ip);
        let conn = rustls::ClientConnection::new(cfg.clone(), name)
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: wulf-sim-storm\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if let Some(b) = body {
        req += &format!("Content-Length: {}\r\n", b.len());
    }
    req += "\r\n";
    let mut out = req.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    stream
        .write_all(&out)
        .and_then(|_| stream.flush())
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{method} {url}: not an HTTP answer: {:?}", line.trim()))?;
    let (mut length, mut chunked) = (None::<u64>, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            anyhow::bail!("{method} {url}: the answer's headers end early");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let mut got = Got {
        status,
        bytes: 0,
        sha256: String::new(),
        body: Vec::new(),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut take = |r: &mut dyn Read, n: Option<u64>, got: &mut Got| -> anyhow::Result<()> {
        let mut want = n;
        loop {
            let cap = want.map_or(buf.len(), |w| (w as usize).min(buf.len()));
            if cap == 0 {
                return Ok(());
            }
            let k = match r.read(&mut buf[..cap]) {
                Ok(0) if want.is_none() => return Ok(()),
                Ok(0) => anyhow::bail!(
                    "{method} {url}: the connection closed after {} bytes",
                    got.bytes
                ),
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if want.is_none() && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(())
                }
                Err(e) => anyhow::bail!("{method} {url}: after {} bytes: {e}", got.bytes),
            };
            hasher.update(&buf[..k]);
            got.bytes += k as u64;
            if keep {
                got.body.extend_from_slice(&buf[..k]);
            }
            if let Some(w) = want.as_mut() {
                *w -= k as u64;
            }
        }
    };
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| anyhow::anyhow!("{method} {url}: bad chunk size {:?}", line.trim()))?;
            if size == 0 {
                break;
            }
            take(&mut r, Some(size), &mut got)?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if method != "HEAD" {
        take(&mut r, length, &mut got)?;
    }
    got.sha256 = hex::encode(hasher.finalize());
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://10.0.0.1:8740/boot/ipxe?mac=x").unwrap(),
            (false, "10.0.0.1".into(), 8740, "/boot/ipxe?mac=x".into())
        );
        assert_eq!(
            split_url("https://10.0.0.1").unwrap(),
            (true, "10.0.0.1".into(), 443, "/".into())
        );
        assert!(split_url("tftp://x/y").is_err());
        assert!(split_url("http://h:port/").is_err());
    }
}

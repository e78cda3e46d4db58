//! The swarm's plain HTTP/1.1, one request per connection: the node's requests to its head
//! and peers (from a chosen source address, which simulated nodes need and ureq cannot
//! give), and a peer's reading of the requests it serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// An answer whose body is still to be read from `body`.
pub struct Answer {
    pub status: u16,
    /// Content-Length, when given.
    pub length: Option<u64>,
    pub body: BufReader<TcpStream>,
}

impl Answer {
    /// The whole body as text (for an error answer), at most 4 KiB.
    pub fn text(mut self) -> String {
        let mut s = String::new();
        let _ = (&mut self.body).take(4096).read_to_string(&mut s);
        s.trim().to_string()
    }
}

/// `http://HOST:PORT` → its address (HOST is an IP address or a name the system resolves).
pub fn resolve(base: &str) -> Result<(SocketAddr, String), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{base}' is not an http:// URL"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    use std::net::ToSocketAddrs;
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{hostport}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{hostport}' has no address"))?;
    Ok((addr, hostport.to_string()))
}

/// GET `path` from `to` (with `Host: host`), from source address `bind` when given.
pub fn get(
    to: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    bind: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<Answer> {
    let domain = if to.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    if let Some(ip) = bind {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    sock.connect_timeout(&to.into(), timeout.min(Duration::from_secs(10)))?;
    let mut tcp: TcpStream = sock.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: wulf-swarm\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    tcp.write_all(req.as_bytes())?;
    let mut r = BufReader::with_capacity(256 * 1024, tcp);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {:?}", line.trim())))?;
    let mut length = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("the answer's headers end early"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
    Ok(Answer {
        status,
        length,
        body: r,
    })
}

/// A request a peer serves: its path and `Authorization` header.
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
}

/// Read one request's head (at most 8 KiB) from `r`.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, String> {
    let mut head = Vec::new();
    let mut line = String::new();
    let mut authorization = None;
    let mut first = None;
    loop {
        line.clear();
        let n = r
            .take(8192 - head.len() as u64)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the request: {e}"))?;
        if n == 0 {
            return Err("the request ends early (or its head is over 8 KiB)".into());
        }
        head.extend_from_slice(line.as_bytes());
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if first.is_none() {
            first = Some(l.to_string());
        } else if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let first = first.ok_or("an empty request")?;
    let mut parts = first.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => Ok(Request {
            path: path.to_string(),
            authorization,
        }),
        _ => Err(format!("not a GET request: {first:?}")),
    }
}

/// Write an answer's head; the body follows.
pub fn answer_head(w: &mut impl Write, status: u16, reason: &str, len: u64) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// A short text answer.
pub fn answer_text(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    text: &str,
) -> std::io::Result<()> {
    let body = format!("{text}\n");
    answer_head(w, status, reason, body.len() as u64)?;
    w.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let mut r = BufReader::new(
            &b"GET /piece/abc/3 HTTP/1.1\r\nHost: x\r\nauthorization: Bearer swarm:1:2\r\n\r\n"[..],
        );
        let q = read_request(&mut r).unwrap();
        assert_eq!(q.path, "/piece/abc/3");
        assert_eq!(q.authorization.as_deref(), Some("Bearer swarm:1:2"));
        for bad in [&b"POST / HTTP/1.1\r\n\r\n"[..], b"GET", b"\r\n", b""] {
            assert!(read_request(&mut BufReader::new(bad)).is_err());
        }
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(read_request(&mut BufReader::new(long.as_bytes())).is_err());
    }

    #[test]
    fn bases() {
        assert_eq!(
            resolve("http://127.0.0.1:8080/boot/file/x").unwrap().1,
            "127.0.0.1:8080"
        );
        assert_eq!(resolve("http://127.0.0.1").unwrap().0.port(), 80);
        assert!(resolve("https://127.0.0.1").is_err());
    }
}

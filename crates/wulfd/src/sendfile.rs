//! The fast path for boot files. A connection whose first request is `GET` or `HEAD` of
//! `/boot/file/SHA256` is answered here with sendfile(2) — file pages go from the page cache
//! to the socket without being copied through the process — and then closed. Every other
//! connection is handed to the axum router unchanged. Many nodes downloading a large image at
//! once is the case this is for.
//!
//! The same port serves HTTPS: a connection whose first byte is 0x16 (a TLS handshake record)
//! goes through the TLS handshake and then, as TLS, to the axum router (boot files over TLS
//! are served there); the router's [`crate::tls::require_tls`] keeps plain HTTP to `/boot/`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::web::Conn;

/// A connection axum serves: plain TCP or TLS over TCP.
pub type Stream = Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

const PREFIXES: [&[u8]; 2] = [b"GET /boot/file/", b"HEAD /boot/file/"];
const MAX_HEAD: usize = 16 * 1024;

/// A listener for axum that keeps boot-file connections for itself.
pub struct SplitListener {
    rx: mpsc::Receiver<(crate::limits::Tracked<Stream>, Conn)>,
    local: SocketAddr,
}

impl axum::serve::Listener for SplitListener {
    type Io = crate::limits::Tracked<Stream>;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Conn) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop stopped (shutdown): wait for axum's graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        Ok(Conn {
            peer: self.local,
            tls: false,
        })
    }
}

/// Accept on `listener`, serving boot files here and passing the rest to the returned listener.
pub fn split(
    listener: TcpListener,
    app: Arc<App>,
    cancel: CancellationToken,
) -> io::Result<SplitListener> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Past the connection cap: room is made, or this one is closed at once.
            let Some(ticket) = crate::limits::admit(peer) else {
                crate::limits::refuse(stream);
                continue;
            };
            let (tx, app) = (tx.clone(), app.clone());
            tokio::spawn(crate::limits::guard(ticket, async move {
                let first = first_byte(&stream).await;
                if first == Some(TLS_HANDSHAKE) {
                    // A TLS response is several records: without this, Nagle's algorithm
                    // and the peer's delayed ACK hold the last one back by 40 ms.
                    let _ = stream.set_nodelay(true);
                    let hs = app.tls.acceptor.accept(stream);
                    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, hs).await {
                        Ok(Ok(tls)) => {
                            let conn = Conn { peer, tls: true };
                            let io = crate::limits::track(Either::Right(tls));
                            let _ = tx.send((io, conn)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                } else if first.is_some() && is_boot_file(&stream).await {
                    let _ = stream.set_nodelay(true);
                    let (t, mut out) = (std::time::Instant::now(), Default::default());
                    if let Err(e) = serve(&app, stream, &mut out).await {
                        tracing::debug!(%peer, error = %e, "boot file transfer ended early");
                    }
                    crate::metrics::get().http.sendfile(&out, t.elapsed());
                } else {
                    let conn = Conn { peer, tls: false };
                    let io = crate::limits::track(Either::Left(stream));
                    let _ = tx.send((io, conn)).await;
                }
            }));
        }
    });
    Ok(SplitListener { rx, local })
}

/// The connection's first byte, without consuming it (None: closed or silent too long).
async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut b)).await {
        Ok(Ok(1)) => Some(b[0]),
        _ => None,
    }
}

/// Look at the first bytes without consuming them.
async fn is_boot_file(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 17];
    let mut last = 0;
    for _ in 0..200 {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 {
            return false;
        }
        let seen = &buf[..n];
        let possible = PREFIXES
            .iter()
            .any(|p| p.starts_with(&seen[..n.min(p.len())]) || seen.starts_with(p));
        if !possible {
            return false;
        }
        if PREFIXES.iter().any(|p| seen.starts_with(p)) {
            return true;
        }
        if n == last {
            // Only part of the request line has arrived; give the rest a moment.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        last = n;
    }
    false
}

pub struct Head {
    method_head: bool,
    sha256: String,
    range: Option<String>,
    if_none_match: Option<String>,
    /// Sent by a peer head fetching a file it lacks: never passed on to another peer.
    from_peer: bool,
    /// What an image's download needs (see [`crate::enroll::images`]).
    authorization: Option<String>,
}

pub fn parse_head(raw: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?;
    let target = first.next()?;
    let path = target.split('?').next()?;
    let sha256 = path.strip_prefix("/boot/file/")?.to_string();
    let mut range = None;
    let mut if_none_match = None;
    let mut from_peer = false;
    let mut authorization = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => range = Some(value.trim().to_string()),
            "if-none-match" => if_none_match = Some(value.trim().to_string()),
            crate::peers::PEER_HEADER => from_peer = true,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    Some(Head {
        method_head: method == "HEAD",
        sha256,
        range,
        if_none_match,
        from_peer,
        authorization,
    })
}

/// A single `bytes=` range of a file of `len` bytes, as (start, end inclusive). `Err` when it
/// cannot be satisfied; `Ok(None)` when the header is not one we honour (serve it all).
#[allow(clippy::result_unit_err)]
pub fn parse_range(spec: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(r) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if r.contains(',') {
        return Ok(None);
    }
    let (a, b) = r.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head timed out"))??;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the request head ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            crate::limits::head_complete();
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

async fn reply(
    stream: &mut TcpStream,
    out: &mut crate::metrics::http::Sendfile,
    status: &str,
    extra: &str,
    body: &str,
) -> io::Result<()> {
    out.status = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.shutdown().await
}

async fn serve(
    app: &App,
    mut stream: TcpStream,
    out: &mut crate::metrics::http::Sendfile,
) -> io::Result<()> {
    let started = std::time::Instant::now();
    let raw = match read_head(&mut stream).await {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let too_large = "431 Request Header Fields Too Large";
            return reply(&mut stream, out, too_large, "", "request head too large\n").await;
        }
        r => r?,
    };
    let Some(req) = parse_head(&raw) else {
        return reply(&mut stream, out, "400 Bad Request", "", "bad request\n").await;
    };
    let referenced = crate::boot::referenced(app, &req.sha256);
    if let Some(f) = &referenced {
        // Kernels and initramfs files go to anyone; an image only to a node that boots it.
        let peer = stream.peer_addr().ok().map(|a| a.ip().to_canonical());
        let auth = req.authorization.as_deref();
        if let Err(why) = crate::enroll::images::may_download(app, &f.sha256, auth, peer).await {
            return reply(&mut stream, out, "403 Forbidden", "", &format!("{why}\n")).await;
        }
    }
    if let (Some(f), false) = (&referenced, req.from_peer) {
        // One stat when the file is here; a peer head asking is never sent on.
        crate::peers::ensure_local(app, &f.sha256).await;
    }
    let found = referenced.and_then(|f| app.blobs.path(&f.sha256).map(|p| (f, p)));
    let Some((file_ref, path)) = found else {
        return reply(
            &mut stream,
            out,
            "404 Not Found",
            "",
            &format!("no boot file {}\n", req.sha256),
        )
        .await;
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            return reply(
                &mut stream,
                out,
                "404 Not Found",
                "",
                &format!("file {} is missing on this head\n", file_ref.sha256),
            )
            .await
        }
    };
    let len = file.metadata()?.len();
    let etag = format!("\"{}\"", file_ref.sha256);
    if req
        .if_none_match
        .as_deref()
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let head =
            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n");
        out.status = 304;
        stream.write_all(head.as_bytes()).await?;
        return stream.shutdown().await;
    }
    let range = match req.range.as_deref().map(|r| parse_range(r, len)) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(r))) => Some(r),
        Some(Err(())) => {
            return reply(
                &mut stream,
                out,
                "416 Range Not Satisfiable",
                &format!("Content-Range: bytes */{len}\r\n"),
                "",
            )
            .await
        }
    };
    let (status, start, count, content_range) = match range {
        Some((a, b)) => (
            "206 Partial Content",
            a,
            b - a + 1,
            format!("Content-Range: bytes {a}-{b}/{len}\r\n"),
        ),
        None => ("200 OK", 0, len, String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {count}\r\n\
         Accept-Ranges: bytes\r\nETag: {etag}\r\n{content_range}Connection: close\r\n\r\n"
    );
    out.status = if range.is_some() { 206 } else { 200 };
    stream.write_all(head.as_bytes()).await?;
    if !req.method_head {
        send_file(&stream, &file, start, count).await?;
        out.bytes = count;
        tracing::debug!(sha256 = %file_ref.sha256, bytes = count, "boot file sent");
    }
    let peer = stream
        .peer_addr()
        .ok()
        .map(|a| a.ip().to_canonical().to_string());
    crate::log::access::record(&crate::log::access::Line {
        peer: peer.as_deref(),
        account: None,
        method: if req.method_head { "HEAD" } else { "GET" },
        target: &format!("/boot/file/{}", req.sha256),
        version: "HTTP/1.1",
        status: if range.is_some() { 206 } else { 200 },
        bytes: Some(count),
        started,
    });
    stream.shutdown().await
}

/// Copy `count` bytes of `file` from `start` to the socket with sendfile(2).
async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    start: u64,
    count: u64,
) -> io::Result<()> {
    let (out_fd, in_fd) = (stream.as_raw_fd(), file.as_raw_fd());
    let mut offset =
        libc::off_t::try_from(start).map_err(|_| io::Error::other("offset too large"))?;
    let mut left = count;
    while left > 0 {
        stream.writable().await?;
        let chunk = left.min(1 << 30) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call; `offset` is a
            // valid pointer to an off_t the kernel advances.
            let n = unsafe { libc::sendfile(out_fd, in_fd, &mut offset, chunk) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended early",
                ))
            }
            Ok(n) => {
                left -= n.min(left);
                crate::limits::progress();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Ok(Some((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Err(()));
        assert_eq!(parse_range("bytes=5-3", 1000), Err(()));
        assert_eq!(parse_range("bytes=a-b", 1000), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ok(None));
        assert_eq!(parse_range("items=0-1", 1000), Ok(None));
    }

    #[test]
    fn heads() {
        let h = parse_head(b"GET /boot/file/abc?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nIf-None-Match: \"abc\"").unwrap();
        assert!(!h.method_head);
        assert_eq!(h.sha256, "abc");
        assert_eq!(h.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(h.if_none_match.as_deref(), Some("\"abc\""));
        assert!(!h.from_peer);
        let p = parse_head(b"GET /boot/file/abc HTTP/1.1\r\nX-Wulf-Peer-Fetch: 1").unwrap();
        assert!(p.from_peer);
        assert_eq!(p.authorization, None);
        let a = parse_head(b"GET /boot/file/abc HTTP/1.1\r\nauthorization:  Bearer enroll:u:t ")
            .unwrap();
        assert_eq!(a.authorization.as_deref(), Some("Bearer enroll:u:t"));
        assert!(parse_head(b"GET /other HTTP/1.1").is_none());
        assert!(parse_head(&[0xff, 0xfe]).is_none());
    }
}

//! The HTTP of the simulated nodes' command polls: one async task per node on a small tokio
//! runtime (two worker threads, whatever the node count), each with its own kept-alive
//! connection to the head it polls, as `wulf-agent` keeps one (HTTP/1.1 through hyper, TLS
//! through rustls with the simulator's client configuration).
//!
//! Two things keep the head from being flooded by the pollers' connects: each node's first
//! poll waits for its first report (spread over `--boot-secs`, as real nodes' boots are), and
//! at most [`CONNECTING`] connections are being set up (TCP and TLS handshake) at any time, so
//! the head's listen backlog never overflows and no connect times out in a queue.
//!
//! A loopback head sees each node's polls from an address of its own in 127.0.0.0/8
//! (127.1.0.0 upwards by node number), as real nodes have one each: one local address has only
//! `ip_local_port_range` ports (about 28,000) for connections to one head's port, fewer than
//! 100,000 long polls need.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

/// Connections being set up at once, over all pollers.
pub const CONNECTING: usize = 32;
/// TLS and HTTP handshakes after the TCP connect may take this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer a poll takes (commands carry at most a few MiB of stdin).
const MAX_BODY: usize = 16 << 20;

/// A head, resolved once.
struct Target {
    addr: SocketAddr,
    /// `host:port` for the Host header.
    authority: String,
    /// The name its certificate is checked against; None: plain http://.
    tls_name: Option<ServerName<'static>>,
}

/// One node's connection to the head it polls.
pub struct Conn {
    head: String,
    target: Arc<Target>,
    send: SendRequest<Empty<Bytes>>,
}

/// What every poller shares: TLS, the connect limit, the resolved heads.
pub struct Net {
    tls: Option<tokio_rustls::TlsConnector>,
    connecting: Semaphore,
    targets: Mutex<Vec<(String, Arc<Target>)>>,
}

/// The address node `index` polls a loopback head from.
pub fn loopback_source(index: usize) -> Ipv4Addr {
    let i = index as u32;
    Ipv4Addr::new(127, 1 + ((i >> 16) & 0x7f) as u8, (i >> 8) as u8, i as u8)
}

/// Split a base URL (`https://host:port`, as [`super::normalize_head`] gives) into whether it
/// is TLS, its host and its port.
fn split_url(base: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = match base.split_once("://") {
        Some(("https", r)) => (true, r),
        Some(("http", r)) => (false, r),
        _ => return Err(format!("{base}: not an http:// or https:// URL")),
    };
    let default = if tls { 443 } else { 80 };
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{base}: bad IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{base}: bad port"))?,
                None => default,
            };
            (h.to_string(), port)
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("{base}: bad port"))?,
            ),
            None => (rest.to_string(), default),
        },
    };
    Ok((tls, host, port))
}

impl Net {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Net {
        Net {
            tls: tls.map(tokio_rustls::TlsConnector::from),
            connecting: Semaphore::new(CONNECTING),
            targets: Mutex::new(Vec::new()),
        }
    }

    async fn target(&self, head: &str) -> Result<Arc<Target>, String> {
        if let Ok(t) = self.targets.lock() {
            if let Some((_, t)) = t.iter().find(|(h, _)| h == head) {
                return Ok(t.clone());
            }
        }
        let (tls, host, port) = split_url(head)?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("{head}: {e}"))?
            .next()
            .ok_or_else(|| format!("{head}: the name has no address"))?;
        let tls_name = match tls {
            true => Some(
                ServerName::try_from(host.clone())
                    .map_err(|e| format!("{head}: {e}"))?
                    .to_owned(),
            ),
            false => None,
        };
        let authority = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        let t = Arc::new(Target {
            addr,
            authority,
            tls_name,
        });
        if let Ok(mut all) = self.targets.lock() {
            all.push((head.to_string(), t.clone()));
        }
        Ok(t)
    }

    /// A new connection to `head` for node `index`.
    async fn connect(&self, head: &str, index: usize) -> Result<Conn, String> {
        let t = self.target(head).await?;
        let _permit = self.connecting.acquire().await.map_err(|e| e.to_string())?;
        let sock = match t.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| format!("socket: {e}"))?;
        if t.addr.ip().is_loopback() && t.addr.is_ipv4() {
            // The port is picked at connect(2), for this destination only.
            let on: libc::c_int = 1;
            // SAFETY: setsockopt with a valid fd and a c_int of the size given.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            let from = SocketAddr::new(IpAddr::V4(loopback_source(index)), 0);
            sock.bind(from)
                .map_err(|e| format!("bind to {from} (a loopback address): {e}"))?;
        }
        let tcp = tokio::time::timeout(super::CONNECT_TIMEOUT, sock.connect(t.addr))
            .await
            .map_err(|_| format!("{head}: connect timed out"))?
            .map_err(|e| format!("{head}: connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let handshakes = async {
            match (&self.tls, &t.tls_name) {
                (Some(tls), Some(name)) => {
                    let s = tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("{head}: TLS: {e}"))?;
                    http1(TokioIo::new(s)).await
                }
                (None, Some(_)) => Err(format!(
                    "{head}: an https:// head needs TLS settings (the CA or --insecure)"
                )),
                _ => http1(TokioIo::new(tcp)).await,
            }
        };
        let send = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshakes)
            .await
            .map_err(|_| format!("{head}: the TLS or HTTP handshake timed out"))??;
        Ok(Conn {
            head: head.to_string(),
            target: t,
            send,
        })
    }

    /// `GET path` at `head` with the node's token, on `conn` (made or remade as needed):
    /// the status and body, within `timeout`. On an error the connection is dropped.
    pub async fn get(
        &self,
        conn: &mut Option<Conn>,
        head: &str,
        index: usize,
        path: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        if conn
            .as_ref()
            .is_some_and(|c| c.head != head || c.send.is_closed())
        {
            *conn = None;
        }
        let c = match conn {
            Some(c) => c,
            None => conn.insert(self.connect(head, index).await?),
        };
        let authority = c.target.authority.clone();
        let exchange = async {
            c.send.ready().await.map_err(|e| format!("{head}: {e}"))?;
            let req = hyper::Request::get(path)
                .header(hyper::header::HOST, authority)
                .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = c
                .send
                .send_request(req)
                .await
                .map_err(|e| format!("{head}: {e}"))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("{head}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let out = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("{head}: no answer within {} s", timeout.as_secs())),
        };
        if out.is_err() {
            *conn = None;
        }
        out
    }
}

/// The HTTP/1.1 handshake on `io`; the connection is driven by a task of its own.
async fn http1<T>(io: TokioIo<T>) -> Result<SendRequest<Empty<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("https://10.0.0.1:8740").unwrap(),
            (true, "10.0.0.1".into(), 8740)
        );
        assert_eq!(split_url("http://h").unwrap(), (false, "h".into(), 80));
        assert_eq!(
            split_url("https://[::1]:9").unwrap(),
            (true, "::1".into(), 9)
        );
        assert!(split_url("ftp://h").is_err());
        assert!(split_url("https://h:x").is_err());
    }

    #[test]
    fn loopback_sources_are_distinct() {
        assert_eq!(loopback_source(0), Ipv4Addr::new(127, 1, 0, 0));
        assert_eq!(loopback_source(258), Ipv4Addr::new(127, 1, 1, 2));
        assert_eq!(loopback_source(99_999), Ipv4Addr::new(127, 2, 134, 159));
        assert!(loopback_source(1 << 22).is_loopback());
    }
}

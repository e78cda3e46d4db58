//! The read-only TFTP server (RFC 1350) that hands iPXE to PXE ROMs, with option negotiation
//! (RFC 2347): blksize (RFC 2348), tsize and timeout (RFC 2349), windowsize (RFC 7440).
//!
//! One socket listens for requests. Each read request becomes a task with its own socket,
//! bound to the address the request was sent to (learnt with IP_PKTINFO, so the replies come
//! from the address the client expects) on a new port, and connected to the client. Files
//! are streamed from disk; at most [`MAX_TRANSFERS`] run at once, at most
//! [`crate::limits::TFTP_PER_CLIENT`] for one client address. See docs/admin/tftp.md.

pub mod packet;
pub mod path;
mod transfer;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::TftpSection;
use packet::{Mode, ReadRequest, Request, RequestError};
use path::Refusal;
use transfer::Failure;

/// Transfers running at once; further requests are dropped (the client retries).
pub const MAX_TRANSFERS: usize = 512;

pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let cfg = app.cfg.tftp.clone();
    let server = match Server::bind(&cfg) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "TFTP disabled: cannot listen on {}: {e} (port 69 needs root or \
                 CAP_NET_BIND_SERVICE; set [tftp] listen or enabled = false)",
                cfg.listen
            );
            return;
        }
    };
    server.serve(cancel).await;
}

/// The address a request arrived on: its local IP and interface index.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    ip: IpAddr,
    ifindex: u32,
}

/// A running transfer, by client address: a repeated request is recognised as such.
struct Active {
    id: u64,
    request: Vec<u8>,
    progressed: Arc<AtomicBool>,
    cancel: CancellationToken,
}

struct Shared {
    root: PathBuf,
    allow_outside: Vec<PathBuf>,
    listen: SocketAddr,
    active: Mutex<HashMap<SocketAddr, Active>>,
}

pub struct Server {
    sock: UdpSocket,
    shared: Arc<Shared>,
}

impl Server {
    pub fn bind(cfg: &TftpSection) -> io::Result<Server> {
        let sock = bind_listener(cfg.listen)?;
        Ok(Server {
            shared: Arc::new(Shared {
                root: cfg.root.clone(),
                allow_outside: cfg.allow_outside.clone(),
                listen: sock.local_addr()?,
                active: Mutex::new(HashMap::new()),
            }),
            sock,
        })
    }

    #[cfg(test)]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub async fn serve(self, cancel: CancellationToken) {
        let shared = self.shared;
        if !shared.root.is_dir() {
            tracing::warn!(
                "TFTP root {} is not a directory: every request will fail (install Debian's \
                 ipxe package or set [tftp] root)",
                shared.root.display()
            );
        }
        tracing::info!(listen = %shared.listen, root = %shared.root.display(), "TFTP ready");
        let limit = Arc::new(Semaphore::new(MAX_TRANSFERS));
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; 65536];
        let mut busy_warned: Option<Instant> = None;
        let mut busy_dropped = 0u64;
        let mut next_id = 0u64;
        loop {
            let (n, peer, arrival) = tokio::select! {
                _ = cancel.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                r = recv_with_arrival(&self.sock, &mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("TFTP: receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let pkt = &buf[..n];
            let peer = unmap(peer);
            let req = match packet::parse_request(pkt) {
                Ok(Request::Read(r)) => {
                    crate::metrics::get().tftp_request(Some(true));
                    r
                }
                Ok(Request::Stray) | Err(RequestError::TooShort) => {
                    tracing::debug!(%peer, "TFTP: dropped a stray packet");
                    continue;
                }
                Ok(Request::Write) => {
                    crate::metrics::get().tftp_request(Some(false));
                    tracing::info!(%peer, "TFTP: refused a write request (read-only server)");
                    reply_error(
                        &shared,
                        arrival,
                        peer,
                        packet::ERR_ACCESS,
                        "read-only server",
                    );
                    continue;
                }
                Err(e) => {
                    crate::metrics::get().tftp_request(None);
                    tracing::info!(%peer, "TFTP: bad request: {e}");
                    reply_error(&shared, arrival, peer, packet::ERR_ILLEGAL, &e.to_string());
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                busy_dropped += 1;
                let quiet = match busy_warned {
                    Some(t) => t.elapsed() < Duration::from_secs(10),
                    None => false,
                };
                if !quiet {
                    tracing::warn!(
                        "TFTP: {MAX_TRANSFERS} transfers running; dropped {busy_dropped} \
                         request(s) (clients retry)"
                    );
                    busy_warned = Some(Instant::now());
                    busy_dropped = 0;
                }
                continue;
            };
            let progressed = Arc::new(AtomicBool::new(false));
            let tcancel = cancel.child_token();
            next_id += 1;
            let id = next_id;
            {
                let mut active = lock(&shared.active);
                if let Some(old) = active.get(&peer) {
                    if old.request == pkt && !old.progressed.load(Ordering::Relaxed) {
                        // The client repeated its request before our first answer reached it:
                        // the running transfer retransmits by itself.
                        tracing::debug!(%peer, "TFTP: ignored a repeated request");
                        continue;
                    }
                    // The client started over from the same port: the old transfer is void.
                    old.cancel.cancel();
                } else if active.keys().filter(|a| a.ip() == peer.ip()).count()
                    >= crate::limits::TFTP_PER_CLIENT
                {
                    // One address cannot take the transfers every other client needs.
                    tracing::debug!(
                        %peer,
                        "TFTP: {} transfers already running for {}; dropped a request",
                        crate::limits::TFTP_PER_CLIENT,
                        peer.ip()
                    );
                    continue;
                }
                active.insert(
                    peer,
                    Active {
                        id,
                        request: pkt.to_vec(),
                        progressed: progressed.clone(),
                        cancel: tcancel.clone(),
                    },
                );
            }
            let shared = shared.clone();
            tasks.spawn(async move {
                serve_one(&shared, req, peer, arrival, &tcancel, &progressed).await;
                let mut active = lock(&shared.active);
                if active.get(&peer).is_some_and(|a| a.id == id) {
                    active.remove(&peer);
                }
                drop(permit);
            });
        }
        // Every transfer watches a child of `cancel`: they are all stopping.
        while tasks.join_next().await.is_some() {}
        tracing::debug!("TFTP stopped");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Send an ERROR packet for a request, from the address it was sent to.
fn reply_error(shared: &Shared, arrival: Option<Arrival>, peer: SocketAddr, code: u16, msg: &str) {
    match reply_socket(arrival, shared.listen, peer) {
        Ok(s) => {
            let _ = s.send(&packet::error_packet(code, msg));
        }
        Err(e) => tracing::warn!(%peer, "TFTP: cannot answer: {e}"),
    }
}

async fn serve_one(
    shared: &Shared,
    req: ReadRequest,
    peer: SocketAddr,
    arrival: Option<Arrival>,
    cancel: &CancellationToken,
    progressed: &AtomicBool,
) {
    let file = String::from_utf8_lossy(&req.filename).into_owned();
    let sock = reply_socket(arrival, shared.listen, peer).and_then(|s| {
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s)
    });
    let sock = match sock {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, ?file, "TFTP: cannot open a transfer socket: {e}");
            return;
        }
    };
    let (root, allow, name) = (
        shared.root.clone(),
        shared.allow_outside.clone(),
        req.filename.clone(),
    );
    let opened = tokio::task::spawn_blocking(move || path::open(&root, &name, &allow)).await;
    let opened = match opened {
        Ok(Ok(o)) => o,
        Ok(Err(Refusal::NotFound)) => {
            crate::metrics::get().tftp_transfer(crate::metrics::TftpEnd::NotFound, 0);
            tracing::info!(%peer, ?file, "TFTP: file not found");
            send_error(&sock, packet::ERR_NOT_FOUND, "File not found").await;
            return;
        }
        Ok(Err(Refusal::Denied(why))) => {
            crate::metrics::get().tftp_transfer(crate::metrics::TftpEnd::Denied, 0);
            tracing::warn!(%peer, ?file, "TFTP: access violation: {why}");
            send_error(
                &sock,
                packet::ERR_ACCESS,
                &format!("Access violation: {why}"),
            )
            .await;
            return;
        }
        Ok(Err(Refusal::Io(e))) => {
            crate::metrics::get().tftp_transfer(crate::metrics::TftpEnd::Error, 0);
            tracing::warn!(%peer, ?file, root = %shared.root.display(), "TFTP: cannot open: {e}");
            send_error(&sock, packet::ERR_UNDEFINED, "cannot read the file").await;
            return;
        }
        Err(e) => {
            tracing::warn!(%peer, ?file, "TFTP: open task failed: {e}");
            send_error(&sock, packet::ERR_UNDEFINED, "internal error").await;
            return;
        }
    };
    // netascii changes the length; tsize is then not offered.
    let size = (req.mode == Mode::Octet).then_some(opened.size);
    let n = packet::negotiate(&req.options, size);
    let params = transfer::Params {
        blksize: n.blksize,
        windowsize: n.windowsize,
        timeout: n.timeout,
        oack: (!n.oack.is_empty()).then(|| packet::oack_packet(&n.oack)),
    };
    let started = Instant::now();
    let source = transfer::Source::new(opened.file, req.mode);
    let result = transfer::send(&sock, source, &params, cancel, progressed).await;
    let ms = started.elapsed().as_millis() as u64;
    let (blksize, windowsize) = (n.blksize, n.windowsize);
    crate::metrics::get().tftp_transfer(
        {
            use crate::metrics::TftpEnd as E;
            match &result {
                Ok(_) => E::Complete,
                Err(Failure::Client {
                    during_oack: true, ..
                }) => E::OptionsOnly,
                Err(Failure::Cancelled) => E::Cancelled,
                Err(Failure::Read(_)) => E::Error,
                Err(_) => E::Failed,
            }
        },
        *result.as_ref().unwrap_or(&0),
    );
    match result {
        Ok(bytes) => tracing::debug!(
            %peer, ?file, bytes, ms, blksize, windowsize,
            "TFTP: sent {}", opened.path.display()
        ),
        Err(Failure::Client {
            during_oack: true,
            code,
            message,
        }) => {
            // PXE ROMs ask for tsize, then end the transfer and ask again: not a problem.
            tracing::debug!(%peer, ?file, code, error = %message, "TFTP: client ended the transfer after the option acknowledgement");
        }
        Err(e @ Failure::TimedOut { last_sent: true }) => {
            tracing::debug!(%peer, ?file, ms, "TFTP: {e}")
        }
        Err(e @ (Failure::Client { .. } | Failure::TimedOut { .. } | Failure::Gone)) => {
            tracing::info!(%peer, ?file, ms, "TFTP: transfer failed: {e}")
        }
        Err(Failure::Cancelled) => {
            // No error packet: after a restart of wulfd (or from the client's new request)
            // the client's retry can still succeed.
            tracing::debug!(%peer, ?file, "TFTP: transfer cancelled");
        }
        Err(Failure::Read(e)) => {
            send_error(&sock, packet::ERR_UNDEFINED, "read error").await;
            tracing::warn!(%peer, ?file, "TFTP: cannot read {}: {e}", opened.path.display());
        }
        Err(e @ Failure::Net(_)) => tracing::warn!(%peer, ?file, "TFTP: transfer failed: {e}"),
    }
}

/// Send an ERROR packet on a transfer's socket, best effort (a socket that was just
/// registered may not be known writable yet: `try_send` could fail, so wait, briefly).
async fn send_error(sock: &UdpSocket, code: u16, msg: &str) {
    let pkt = packet::error_packet(code, msg);
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.send(&pkt)).await;
}

/// The listening socket, asking the kernel for each datagram's destination address.
fn bind_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        setsockopt_on(s.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
        // IPv4 datagrams on a dual-stack socket.
        let _ = setsockopt_on(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO);
    } else {
        setsockopt_on(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn setsockopt_on(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

async fn recv_with_arrival(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Arrival>)> {
    sock.async_io(Interest::READABLE, || recvmsg(sock.as_raw_fd(), buf))
        .await
}

/// recvmsg(2) with the IP_PKTINFO / IPV6_PKTINFO control message.
fn recvmsg(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Arrival>)> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 32]; // 256 bytes, aligned for cmsghdr
                                  // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points to live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let peer = sockaddr_to_std(&from)
        .ok_or_else(|| io::Error::other("datagram from an unknown address family"))?;
    let mut arrival = None;
    // SAFETY: the control buffer was filled by recvmsg; the CMSG macros walk it within
    // msg_controllen, and each payload is read unaligned with the type its header names.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                // ipi_spec_dst: our address (for a broadcast, the interface's address).
                let mut ip = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                if ip.is_unspecified() {
                    ip = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                }
                arrival = Some(Arrival {
                    ip: IpAddr::V4(ip),
                    ifindex: info.ipi_ifindex as u32,
                });
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                arrival = Some(Arrival {
                    ip: IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
                    ifindex: info.ipi6_ifindex,
                });
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, peer, arrival))
}

fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in; storage is big and aligned enough.
            let a = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d; talk to them over IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

/// A new socket for one transfer: bound to the address the request arrived on (any port),
/// connected to the client.
fn reply_socket(
    arrival: Option<Arrival>,
    listen: SocketAddr,
    peer: SocketAddr,
) -> io::Result<std::net::UdpSocket> {
    let local = arrival
        .map(|a| (unmap(SocketAddr::new(a.ip, 0)).ip(), a.ifindex))
        .filter(|(ip, _)| !ip.is_unspecified() && !ip.is_multicast())
        .unwrap_or((unmap(listen).ip(), 0));
    let bind = match (local.0, peer) {
        (IpAddr::V4(ip), SocketAddr::V4(_)) => SocketAddr::V4(SocketAddrV4::new(ip, 0)),
        (IpAddr::V6(ip), SocketAddr::V6(p)) => {
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            let scope = if link_local {
                if local.1 != 0 {
                    local.1
                } else {
                    p.scope_id()
                }
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, scope))
        }
        (_, SocketAddr::V4(_)) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        (_, SocketAddr::V6(_)) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.connect(peer)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(root: &std::path::Path) -> (SocketAddr, CancellationToken) {
        let cfg = TftpSection {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            root: root.to_path_buf(),
            allow_outside: Vec::new(),
        };
        let s = Server::bind(&cfg).unwrap();
        let addr = s.local_addr();
        let cancel = CancellationToken::new();
        tokio::spawn(s.serve(cancel.clone()));
        (addr, cancel)
    }

    async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 2000];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        buf.truncate(n);
        (buf, from)
    }

    #[tokio::test]
    async fn serves_over_loopback_and_ignores_a_repeated_request() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f"), vec![7u8; 700]).unwrap();
        let (addr, cancel) = server(root.path()).await;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rrq = b"\0\x01f\0octet\0tsize\x000\0";
        c.send_to(rrq, addr).await.unwrap();
        c.send_to(rrq, addr).await.unwrap(); // the client's impatient retry
        let (oack, tid) = recv(&c).await;
        assert_eq!(oack, b"\0\x06tsize\x00700\0");
        assert_eq!(tid.ip(), addr.ip());
        assert_ne!(tid.port(), addr.port());
        c.send_to(&[0, 4, 0, 0], tid).await.unwrap();
        let (d1, from) = recv(&c).await;
        assert_eq!((from, &d1[..4], d1.len()), (tid, &[0, 3, 0, 1][..], 516));
        c.send_to(&[0, 4, 0, 1], tid).await.unwrap();
        let (d2, _) = recv(&c).await;
        assert_eq!((&d2[..4], d2.len()), (&[0, 3, 0, 2][..], 4 + 188));
        c.send_to(&[0, 4, 0, 2], tid).await.unwrap();
        // Nothing else: the repeated request started no second transfer.
        let mut buf = [0u8; 100];
        let more = tokio::time::timeout(Duration::from_millis(1500), c.recv_from(&mut buf)).await;
        assert!(more.is_err(), "unexpected packet {more:?}");

        // A write request is refused; a missing file is error 1.
        c.send_to(b"\0\x02f\0octet\0", addr).await.unwrap();
        assert_eq!(&recv(&c).await.0[..4], &[0, 5, 0, 2]);
        c.send_to(b"\0\x01g\0octet\0", addr).await.unwrap();
        assert_eq!(recv(&c).await.0, b"\0\x05\0\x01File not found\0");
        cancel.cancel();
    }
}

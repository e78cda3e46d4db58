//! One UDP socket on 0.0.0.0:67 that learns each datagram's ingress interface and destination
//! (IP_PKTINFO) and sends replies out of a chosen interface from a chosen source address.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Where a datagram came from and how it arrived.
#[derive(Debug, Clone, Copy)]
pub struct RxInfo {
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    pub src: SocketAddrV4,
    /// Ingress interface index (0 if unknown).
    pub ifindex: u32,
    /// The IP header's destination address (255.255.255.255 for broadcasts).
    pub dst: Ipv4Addr,
}

impl Default for RxInfo {
    fn default() -> Self {
        RxInfo {
            len: 0,
            truncated: false,
            src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            ifindex: 0,
            dst: Ipv4Addr::UNSPECIFIED,
        }
    }
}

/// Datagrams moved per system call (recvmmsg / sendmmsg).
pub const BATCH: usize = 32;
/// Receive buffer per datagram; longer ones are flagged `truncated`.
pub const RX_BUF: usize = 2048;

/// One reply to send: `data[..len]` of the matching output buffer.
#[derive(Debug, Clone, Copy)]
pub struct TxInfo {
    pub slot: usize,
    pub len: usize,
    pub to: SocketAddrV4,
    /// Interface to send out of (0: by routing).
    pub ifindex: u32,
    /// Source address.
    pub src: Ipv4Addr,
}

pub struct Sock {
    sock: Socket,
}

/// The message headers of one batch (recvmmsg or sendmmsg), kept by a worker from call to
/// call: made (zeroed) once, so a call sets only the entries it uses instead of clearing
/// some 7 KiB of arrays each time.
pub struct Batch {
    names: [libc::sockaddr_in; BATCH],
    iovs: [libc::iovec; BATCH],
    controls: [[u64; 16]; BATCH],
    msgs: [libc::mmsghdr; BATCH],
}

impl Batch {
    pub fn new() -> Box<Batch> {
        // SAFETY: plain-old-data arrays (integers and raw pointers): all zeroes is valid.
        Box::new(unsafe { zeroed() })
    }
}

/// Control-message space for one in_pktinfo, 8-byte aligned.
type Control = [u64; 8];

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: in_addr(*a.ip()),
        sin_zero: [0; 8],
    }
}

/// Fill `control` with an IP_PKTINFO message for `msg` (whose msg_control points at it).
///
/// # Safety
/// `msg.msg_control` must point to `control`, which outlives the send.
unsafe fn put_pktinfo(msg: &mut libc::msghdr, ifindex: u32, src: Ipv4Addr) {
    msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as _;
    let c = libc::CMSG_FIRSTHDR(msg);
    (*c).cmsg_level = libc::IPPROTO_IP;
    (*c).cmsg_type = libc::IP_PKTINFO;
    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
    std::ptr::write_unaligned(
        libc::CMSG_DATA(c) as *mut libc::in_pktinfo,
        libc::in_pktinfo {
            ipi_ifindex: ifindex as libc::c_int,
            ipi_spec_dst: in_addr(src),
            ipi_addr: in_addr(Ipv4Addr::UNSPECIFIED),
        },
    );
}

/// Read the ingress interface and destination address from a received message.
///
/// # Safety
/// `msg` must be a message the kernel filled, its control buffer still alive.
unsafe fn read_pktinfo(msg: &libc::msghdr, info: &mut RxInfo) {
    let mut c = libc::CMSG_FIRSTHDR(msg);
    while !c.is_null() {
        if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
            let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo);
            info.ifindex = pi.ipi_ifindex as u32;
            info.dst = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
        }
        c = libc::CMSG_NXTHDR(msg, c);
    }
}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from(a).to_be(),
    }
}

impl Sock {
    /// Bind 0.0.0.0:`port` for broadcast and packet info; reads time out after `timeout` so
    /// workers can notice they should stop.
    pub fn bind(port: u16, timeout: Duration) -> io::Result<Sock> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_address(true)?;
        sock.set_broadcast(true)?;
        let on: libc::c_int = 1;
        // SAFETY: a valid fd, option and a c_int of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                &on as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // A burst of thousands of clients should queue, not drop: as root, past rmem_max.
        for (force, size) in [
            (libc::SO_RCVBUFFORCE, 8 << 20),
            (libc::SO_SNDBUFFORCE, 4 << 20),
        ] {
            let v: libc::c_int = size;
            // SAFETY: a valid fd, option and a c_int of the stated size.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    force,
                    &v as *const libc::c_int as *const libc::c_void,
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 && force == libc::SO_RCVBUFFORCE {
                let _ = sock.set_recv_buffer_size(size as usize);
            } else if rc != 0 {
                let _ = sock.set_send_buffer_size(size as usize);
            }
        }
        sock.set_read_timeout(Some(timeout))?;
        sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        Ok(Sock { sock })
    }

    #[cfg(test)]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<RxInfo> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: plain-old-data structs, zero is a valid value.
        let mut name: libc::sockaddr_in = unsafe { zeroed() };
        let mut control = [0u64; 16];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &mut name as *mut libc::sockaddr_in as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg points to live buffers of the lengths given.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut info = RxInfo {
            len: (n as usize).min(buf.len()),
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            src: SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                u16::from_be(name.sin_port),
            ),
            ifindex: 0,
            dst: Ipv4Addr::UNSPECIFIED,
        };
        // SAFETY: the kernel filled msg; its control buffer is alive.
        unsafe { read_pktinfo(&msg, &mut info) };
        Ok(info)
    }

    /// Send `data` to `to`, out of interface `ifindex` (0: by routing), from `src`.
    pub fn send(
        &self,
        data: &[u8],
        to: SocketAddrV4,
        ifindex: u32,
        src: Ipv4Addr,
    ) -> io::Result<()> {
        let mut name = sockaddr(to);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut control: Control = [0u64; 8];
        // SAFETY: zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &mut name as *mut libc::sockaddr_in as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: msg_control points at `control`, alive until sendmsg returns.
        unsafe { put_pktinfo(&mut msg, ifindex, src) };
        loop {
            // SAFETY: msg points to live buffers of the lengths given.
            let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receive up to `bufs.len()` (at most BATCH) datagrams: blocks (up to the read timeout)
    /// for the first, then takes what is already queued. Returns how many; `infos[i]`
    /// describes `bufs[i]`.
    pub fn recv_batch(
        &self,
        b: &mut Batch,
        bufs: &mut [[u8; RX_BUF]],
        infos: &mut [RxInfo],
    ) -> io::Result<usize> {
        let n = bufs.len().min(infos.len()).min(BATCH);
        let Batch {
            names,
            iovs,
            controls,
            msgs,
        } = b;
        for i in 0..n {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: RX_BUF,
            };
            let m = &mut msgs[i];
            m.msg_len = 0;
            let h = &mut m.msg_hdr;
            h.msg_name = &mut names[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = controls[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = std::mem::size_of_val(&controls[i]) as _;
            h.msg_flags = 0;
        }
        // SAFETY: every header points to live buffers of the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for i in 0..got {
            let m = &msgs[i];
            let mut info = RxInfo {
                len: (m.msg_len as usize).min(RX_BUF),
                truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                src: SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)),
                    u16::from_be(names[i].sin_port),
                ),
                ifindex: 0,
                dst: Ipv4Addr::UNSPECIFIED,
            };
            // SAFETY: the kernel filled this header; its control buffer is alive.
            unsafe { read_pktinfo(&m.msg_hdr, &mut info) };
            infos[i] = info;
        }
        Ok(got)
    }

    /// Send the replies in `tx` (data from `outs[tx.slot]`) with as few system calls as
    /// possible. Returns (sent, the first error if some could not be sent).
    pub fn send_batch(
        &self,
        b: &mut Batch,
        outs: &[Vec<u8>],
        tx: &[TxInfo],
    ) -> (usize, Option<io::Error>) {
        let n = tx.len().min(BATCH);
        let Batch {
            names,
            iovs,
            controls,
            msgs,
        } = b;
        let mut count = 0;
        for t in tx.iter().take(n) {
            let Some(data) = outs.get(t.slot).and_then(|o| o.get(..t.len)) else {
                continue;
            };
            let i = count;
            names[i] = sockaddr(t.to);
            iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let m = &mut msgs[i];
            m.msg_len = 0;
            let h = &mut m.msg_hdr;
            h.msg_name = &mut names[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = controls[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_flags = 0;
            // SAFETY: msg_control points at controls[i], alive until sendmmsg returns.
            unsafe { put_pktinfo(h, t.ifindex, t.src) };
            count += 1;
        }
        let mut sent = 0;
        let mut first_err = None;
        let mut at = 0;
        while at < count {
            // SAFETY: headers at..count point to live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    msgs[at..].as_mut_ptr(),
                    (count - at) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the message that failed and carry on with the rest.
                first_err.get_or_insert(e);
                at += 1;
            } else if r == 0 {
                at += 1;
            } else {
                sent += r as usize;
                at += r as usize;
            }
        }
        (sent, first_err)
    }

    #[cfg(test)]
    pub fn local_port(&self) -> Option<u16> {
        self.sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket_ipv4())
            .map(|a| a.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trip_reports_pktinfo() {
        let s = Sock::bind(0, Duration::from_secs(2)).unwrap();
        let port = s.local_port().unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let rx = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..rx.len], b"hello");
        assert!(!rx.truncated);
        assert_eq!(rx.dst, Ipv4Addr::LOCALHOST);
        assert!(rx.ifindex > 0);
        let from = match c.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        assert_eq!(rx.src, from);
        s.send(b"back", from, 0, Ipv4Addr::LOCALHOST).unwrap();
        let mut b = [0u8; 16];
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, _) = c.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], b"back");
        // A datagram longer than the buffer is flagged.
        c.send_to(&[7u8; 100], ("127.0.0.1", port)).unwrap();
        let rx = s.recv(&mut buf).unwrap();
        assert!(rx.truncated);

        // Batches: three queued datagrams in one call, replies in one call.
        for i in 0..3u8 {
            c.send_to(&[i; 10], ("127.0.0.1", port)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut bufs = vec![[0u8; RX_BUF]; 4];
        let mut infos = [RxInfo::default(); 4];
        let mut batch = Batch::new();
        let n = s.recv_batch(&mut batch, &mut bufs, &mut infos).unwrap();
        assert_eq!(n, 3);
        for i in 0..3 {
            assert_eq!(&bufs[i][..infos[i].len], &[i as u8; 10]);
            assert_eq!(infos[i].src, from);
        }
        let outs = vec![b"one".to_vec(), b"two".to_vec()];
        let tx: Vec<TxInfo> = (0..2)
            .map(|slot| TxInfo {
                slot,
                len: 3,
                to: from,
                ifindex: 0,
                src: Ipv4Addr::LOCALHOST,
            })
            .collect();
        let (sent, err) = s.send_batch(&mut batch, &outs, &tx);
        assert_eq!((sent, err.is_none()), (2, true));
        for want in [b"one", b"two"] {
            let (n, _) = c.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], want);
        }
    }
}

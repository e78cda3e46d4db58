//! The DHCP side of a boot storm: one UDP socket on the client port (68) of the storm's
//! interface, shared by every simulated node (each exchange has its own transaction id and
//! the node's MAC as chaddr); a receiver thread hands each reply to the exchange waiting for
//! its transaction id. Requests carry the broadcast flag, as PXE ROMs' do: the nodes have no
//! address yet.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// PXE's vendor class for BIOS firmware (UNDI 2.1), sent by PXE ROMs and by iPXE alike.
const PXE_VENDOR: &[u8] = b"PXEClient:Arch:00000:UNDI:002001";

/// Which firmware asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// A BIOS PXE ROM (not iPXE): the answer names a loader on TFTP.
    Pxe,
    /// iPXE (user class "iPXE", option 77): the answer names the boot script's URL.
    Ipxe,
}

/// What a DHCPACK gave a node.
#[derive(Debug, Clone)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mask_bits: u8,
    /// siaddr (next server), else option 66, else the server.
    pub next_server: Ipv4Addr,
    /// Option 67, else the file field.
    pub boot_file: String,
}

#[derive(Debug, Clone)]
struct Reply {
    msg_type: u8,
    chaddr: [u8; 6],
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    file: String,
    options: HashMap<u8, Vec<u8>>,
}

type Waiting = Arc<Mutex<HashMap<u32, Sender<Reply>>>>;

/// The shared client socket and its receiver thread (stopped on drop).
pub struct Client {
    sock: std::net::UdpSocket,
    waiting: Waiting,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    /// Bind 0.0.0.0:68 on interface `iface` (SO_BINDTODEVICE: broadcasts leave through it
    /// before it has an address).
    pub fn bind(iface: &str) -> anyhow::Result<Client> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_broadcast(true)?;
        s.bind_device(Some(iface.as_bytes())).map_err(|e| {
            anyhow::anyhow!("cannot bind the DHCP client socket to interface {iface}: {e}")
        })?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
            .map_err(|e| anyhow::anyhow!("cannot bind the DHCP client port 68: {e}"))?;
        // Large buffers: a thousand nodes' replies can arrive at once.
        let _ = s.set_recv_buffer_size(8 << 20);
        let sock: std::net::UdpSocket = s.into();
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let waiting: Waiting = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sock, waiting, stop) = (sock.try_clone()?, waiting.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dhcp-rx".into())
                .spawn(move || receive(sock, waiting, stop))?
        };
        Ok(Client {
            sock,
            waiting,
            stop,
            thread: Some(thread),
        })
    }

    fn wait_for(&self, xid: u32) -> Receiver<Reply> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(xid, tx);
        }
        rx
    }

    fn done(&self, xid: u32) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&xid);
        }
    }

    /// DISCOVER, OFFER, REQUEST, ACK for `mac` as `fw` would, until `deadline`. Requests
    /// are sent again after 2, 4, 8, 8 … s without an answer (and the exchange starts over
    /// after a NAK); each such resend adds one to `retries`.
    pub fn lease(
        &self,
        mac: [u8; 6],
        fw: Firmware,
        deadline: Instant,
        retries: &mut u64,
    ) -> anyhow::Result<Lease> {
        let xid: u32 = rand::random();
        let rx = self.wait_for(xid);
        let r = self.exchange(xid, &rx, mac, fw, deadline, retries);
        self.done(xid);
        r
    }

    fn exchange(
        &self,
        xid: u32,
        rx: &Receiver<Reply>,
        mac: [u8; 6],
        fw: Firmware,
        deadline: Instant,
        retries: &mut u64,
    ) -> anyhow::Result<Lease> {
        let started = Instant::now();
        let mut wait = Duration::from_secs(2);
        // Send `pkt` and wait for a reply of type `want` (or a NAK), resending on silence;
        // each resend is a retry.
        let mut ask = |pkt: &[u8], want: u8, retries: &mut u64| -> anyhow::Result<Reply> {
            let mut sent = 0u32;
            loop {
                if sent > 0 {
                    *retries += 1;
                }
                sent += 1;
                self.sock
                    .send_to(pkt, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
                    .map_err(|e| anyhow::anyhow!("cannot send a DHCP request: {e}"))?;
                let until = (Instant::now() + wait).min(deadline);
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(r) if r.chaddr == mac && (r.msg_type == want || r.msg_type == 6) => {
                            return Ok(r)
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "no DHCP {} within {:.0} s ({sent} sent)",
                        if want == 2 { "offer" } else { "ack" },
                        started.elapsed().as_secs_f64()
                    );
                }
                wait = (wait * 2).min(Duration::from_secs(8));
            }
        };
        let mut naks = 0u32;
        loop {
            if naks > 0 {
                if Instant::now() >= deadline {
                    anyhow::bail!("DHCP: {naks} NAKs, no lease");
                }
                // A NAK: start over, after a pause as firmware does.
                *retries += 1;
                std::thread::sleep(Duration::from_secs(1).min(deadline - Instant::now()));
            }
            let offer = ask(&packet(xid, mac, fw, 1, None), 2, retries)?;
            if offer.msg_type != 2 {
                naks += 1;
                continue;
            }
            let server = opt_ip(&offer.options, 54).unwrap_or(offer.siaddr);
            let ack = ask(
                &packet(xid, mac, fw, 3, Some((offer.yiaddr, server))),
                5,
                retries,
            )?;
            if ack.msg_type == 6 {
                naks += 1;
                continue;
            }
            let mask = opt_ip(&ack.options, 1).unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
            let boot_file = match ack.options.get(&67) {
                Some(v) => String::from_utf8_lossy(v)
                    .trim_end_matches('\0')
                    .to_string(),
                None => ack.file.clone(),
            };
            let tftp_server = ack.options.get(&66).and_then(|v| {
                String::from_utf8_lossy(v)
                    .trim_end_matches('\0')
                    .parse()
                    .ok()
            });
            let next_server = match ack.siaddr {
                a if !a.is_unspecified() => a,
                _ => tftp_server.unwrap_or(server),
            };
            return Ok(Lease {
                ip: ack.yiaddr,
                mask_bits: u32::from(mask).count_ones() as u8,
                next_server,
                boot_file,
            });
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn receive(sock: std::net::UdpSocket, waiting: Waiting, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some((xid, reply)) = parse(&buf[..n]) else {
            continue;
        };
        let tx = waiting.lock().ok().and_then(|w| w.get(&xid).cloned());
        if let Some(tx) = tx {
            let _ = tx.send(reply);
        }
    }
}

fn opt_ip(o: &HashMap<u8, Vec<u8>>, code: u8) -> Option<Ipv4Addr> {
    let v = o.get(&code)?;
    (v.len() >= 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]))
}

/// A DHCP client message of `msg_type` (1 DISCOVER, 3 REQUEST) as BIOS PXE firmware or iPXE
/// sends it; a REQUEST names the offered address and the server.
fn packet(
    xid: u32,
    mac: [u8; 6],
    fw: Firmware,
    msg_type: u8,
    req: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast flag
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC);
    let mut o = |code: u8, v: &[u8]| {
        p.push(code);
        p.push(v.len() as u8);
        p.extend_from_slice(v);
    };
    o(53, &[msg_type]);
    o(57, &1472u16.to_be_bytes());
    o(93, &[0, 0]); // client architecture: x86 BIOS
    o(94, &[1, 2, 1]); // network interface: UNDI 2.1
    o(60, PXE_VENDOR);
    let mut uuid = [0u8; 17];
    uuid[11..17].copy_from_slice(&mac);
    o(97, &uuid);
    if fw == Firmware::Ipxe {
        o(77, b"iPXE");
    }
    o(
        55,
        &[1, 3, 6, 12, 15, 17, 43, 54, 60, 66, 67, 128, 129, 130],
    );
    if let Some((ip, server)) = req {
        o(50, &ip.octets());
        o(54, &server.octets());
    }
    p.push(255);
    while p.len() < 300 {
        p.push(0);
    }
    p
}

fn parse(b: &[u8]) -> Option<(u32, Reply)> {
    if b.len() < 240 || b[0] != 2 || b[236..240] != MAGIC {
        return None;
    }
    let xid = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&b[28..34]);
    let file = String::from_utf8_lossy(&b[108..236])
        .trim_end_matches('\0')
        .to_string();
    let mut options = HashMap::new();
    let mut i = 240;
    while i < b.len() {
        let code = b[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(*b.get(i + 1)?);
        let v = b.get(i + 2..i + 2 + len)?;
        options
            .entry(code)
            .or_insert_with(Vec::new)
            .extend_from_slice(v);
        i += 2 + len;
    }
    let msg_type = options.get(&53).and_then(|v| v.first().copied())?;
    Some((
        xid,
        Reply {
            msg_type,
            chaddr,
            yiaddr: ip(16),
            siaddr: ip(20),
            file,
            options,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_back_as_replies_would() {
        let mac = [2, 0x53, 0, 0, 0, 7];
        let mut p = packet(
            0xdead_beef,
            mac,
            Firmware::Ipxe,
            3,
            Some((Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 1))),
        );
        p[0] = 2; // as if the server had answered
        let (xid, r) = parse(&p).unwrap();
        assert_eq!((xid, r.msg_type, r.chaddr), (0xdead_beef, 3, mac));
        assert_eq!(r.options[&77], b"iPXE");
        assert_eq!(opt_ip(&r.options, 50), Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(u16::from_be_bytes([p[10], p[11]]), 0x8000);
        let pxe = packet(1, mac, Firmware::Pxe, 1, None);
        assert!(!pxe.windows(4).any(|w| w == b"iPXE"));
        assert!(parse(&pxe[..100]).is_none());
    }
}

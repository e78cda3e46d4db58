//! What to answer (RFC 2131 §4.3) and how the answer looks, without sockets or the cache:
//! the server resolves the client to a `Reservation` and hands it here.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::wire::{opt, Header, MsgType, Packet, Writer, FLAG_BROADCAST, MAX_MESSAGE};

/// What kind of client a reservation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Node,
    Bmc,
    Host,
}

impl Who {
    pub fn name(self) -> &'static str {
        match self {
            Who::Node => "node",
            Who::Bmc => "BMC of node",
            Who::Host => "host",
        }
    }
}

/// A client's reserved address and the settings of the network it is on.
#[derive(Debug, Clone)]
pub struct Reservation<'a> {
    pub who: Who,
    pub ip: Ipv4Addr,
    pub hostname: Cow<'a, str>,
    pub mask_bits: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: &'a [Ipv4Addr],
    pub domain: &'a str,
    /// The reservation's network is the one the request came from (the ingress interface's
    /// subnet, or the relay's for relayed requests).
    pub net_ok: bool,
}

/// What firmware asked for, from options 93, 77, 175 and 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    /// iPXE: give it the URL of its boot script.
    Ipxe,
    /// UEFI HTTP boot (arch 16): a URL and vendor class "HTTPClient".
    UefiHttp,
    /// PXE ROM: a file name on the head's TFTP server.
    Pxe(&'static str),
    /// PXE for an architecture wulf has no loader for.
    PxeUnsupported(u16),
    /// An operating system's DHCP client: no boot file.
    Plain,
}

/// Boot loaders served over TFTP.
pub const BIOS_LOADER: &str = "undionly.kpxe";
pub const UEFI_LOADER: &str = "ipxe.efi";

pub fn client_type(p: &Packet) -> ClientType {
    if p.is_ipxe() {
        return ClientType::Ipxe;
    }
    // Option 93, else the architecture PXE and HTTP clients name in their vendor class
    // ("PXEClient:Arch:00007:UNDI:003016", RFC 4578 §2.1 and the UEFI specification).
    let pxe = p.vendor_is(b"PXEClient");
    let http = p.vendor_is(b"HTTPClient");
    let arch = p
        .arch
        .or_else(|| (pxe || http).then(|| vendor_arch(p.vendor_class)).flatten());
    match arch {
        Some(0) => ClientType::Pxe(BIOS_LOADER),
        Some(7 | 9) => ClientType::Pxe(UEFI_LOADER),
        Some(16) => ClientType::UefiHttp,
        Some(a) => ClientType::PxeUnsupported(a),
        None if pxe => ClientType::Pxe(BIOS_LOADER),
        None if http => ClientType::UefiHttp,
        None => ClientType::Plain,
    }
}

/// The decimal architecture after "Arch:" in a PXE or HTTP client's vendor class.
fn vendor_arch(class: &[u8]) -> Option<u16> {
    let at = class.windows(5).position(|w| w == b"Arch:")? + 5;
    let digits = class.get(at..at + 5)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The boot file to hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    None,
    Tftp(&'static str),
    Url { url: String, http_client: bool },
}

impl BootFile {
    pub fn name(&self) -> Option<&str> {
        match self {
            BootFile::None => None,
            BootFile::Tftp(n) => Some(n),
            BootFile::Url { url, .. } => Some(url),
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Offer,
    Ack,
    /// DHCPACK to a DHCPINFORM: options only.
    Inform,
    Nak(&'static str),
    Ignore(&'static str),
    Decline,
    Release,
}

/// RFC 2131 §4.3 for a client with a reservation. `ours` says whether an address is one of
/// this head's (for the server identifier).
pub fn decide(p: &Packet, r: &Reservation, ours: impl Fn(Ipv4Addr) -> bool) -> Verdict {
    let other_server = p.server_id.is_some_and(|s| !ours(s));
    match p.msg_type {
        MsgType::Discover if !r.net_ok => {
            Verdict::Ignore("its reserved address is on another network")
        }
        MsgType::Discover => Verdict::Offer,
        MsgType::Request => {
            if other_server {
                return Verdict::Ignore("it chose another server");
            }
            // SELECTING and INIT-REBOOT carry option 50; RENEWING and REBINDING carry ciaddr.
            let asked = p
                .requested_ip
                .or_else(|| (!p.ciaddr.is_unspecified()).then_some(p.ciaddr));
            match asked {
                None => Verdict::Nak("no address requested"),
                Some(_) if !r.net_ok => Verdict::Nak("wrong network"),
                Some(a) if a != r.ip => {
                    Verdict::Nak("requested address is not the client's reservation")
                }
                Some(_) => Verdict::Ack,
            }
        }
        MsgType::Inform if !r.net_ok => Verdict::Ignore("it informs from another network"),
        MsgType::Inform => Verdict::Inform,
        MsgType::Decline if other_server => Verdict::Ignore("it declined another server's offer"),
        MsgType::Decline => Verdict::Decline,
        MsgType::Release if other_server => Verdict::Ignore("it released another server's lease"),
        MsgType::Release => Verdict::Release,
        _ => Verdict::Ignore("not a client message"),
    }
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To the relay agent's server port.
    Relay(SocketAddrV4),
    /// To the client's address (it has one: renewing, rebinding, informing).
    Unicast(SocketAddrV4),
    /// To 255.255.255.255 on the ingress interface.
    Broadcast(u16),
}

/// RFC 2131 §4.1: relayed → the relay; NAK → broadcast; ciaddr set → unicast to it; otherwise
/// broadcast (the client has no address yet; we do not inject ARP entries to unicast).
pub fn destination(p: &Packet, v: Verdict, server_port: u16, client_port: u16) -> Dest {
    if !p.giaddr.is_unspecified() {
        return Dest::Relay(SocketAddrV4::new(p.giaddr, server_port));
    }
    if matches!(v, Verdict::Nak(_)) || p.ciaddr.is_unspecified() {
        return Dest::Broadcast(client_port);
    }
    Dest::Unicast(SocketAddrV4::new(p.ciaddr, client_port))
}

pub fn mask(bits: u8) -> Ipv4Addr {
    let m = match bits {
        0 => 0,
        b if b >= 32 => u32::MAX,
        b => u32::MAX << (32 - u32::from(b)),
    };
    Ipv4Addr::from(m)
}

/// Options sent whether asked for or not (after the requested ones, in this order).
const DEFAULT_OPTIONS: [u8; 8] = [
    opt::SUBNET_MASK,
    opt::ROUTER,
    opt::DNS,
    opt::DOMAIN_NAME,
    opt::HOST_NAME,
    opt::LEASE_TIME,
    opt::RENEWAL,
    opt::REBINDING,
];

/// Everything a reply needs besides the request and the reservation.
pub struct ReplyParams<'a> {
    pub server_id: Ipv4Addr,
    pub lease_secs: u32,
    pub boot: &'a BootFile,
}

fn copy_chaddr(p: &Packet) -> [u8; 16] {
    *p.chaddr
}

/// Write the reply for `v` (Offer, Ack, Inform or Nak) into `buf`; returns its length, or 0
/// for verdicts that get no reply.
pub fn build(
    buf: &mut Vec<u8>,
    p: &Packet,
    v: Verdict,
    r: &Reservation,
    params: &ReplyParams,
) -> usize {
    let msg = match v {
        Verdict::Offer => MsgType::Offer,
        Verdict::Ack | Verdict::Inform => MsgType::Ack,
        Verdict::Nak(_) => MsgType::Nak,
        _ => return 0,
    };
    let relayed = !p.giaddr.is_unspecified();
    let nak = msg == MsgType::Nak;
    let inform = v == Verdict::Inform;
    let mut flags = p.flags & FLAG_BROADCAST;
    if nak && relayed {
        flags |= FLAG_BROADCAST;
    }
    let boot_name = if nak { None } else { params.boot.name() };
    let http_client = matches!(
        params.boot,
        BootFile::Url {
            http_client: true,
            ..
        }
    ) && !nak;
    let h = Header {
        msg_type: msg,
        xid: p.xid,
        flags,
        ciaddr: if nak { Ipv4Addr::UNSPECIFIED } else { p.ciaddr },
        yiaddr: if nak || inform {
            Ipv4Addr::UNSPECIFIED
        } else {
            r.ip
        },
        siaddr: if nak || r.who != Who::Node {
            Ipv4Addr::UNSPECIFIED
        } else {
            params.server_id
        },
        giaddr: p.giaddr,
        htype: p.htype,
        hlen: p.hlen,
        chaddr: copy_chaddr(p),
    };
    let reserve = p.client_id.map_or(0, |c| 2 + c.len().min(255))
        + p.relay_info.map_or(0, |c| 2 + c.len().min(255));
    let limit = p
        .max_size
        .map_or(0, |m| usize::from(m).saturating_sub(28))
        .min(MAX_MESSAGE);
    let mut w = Writer::new(buf, &h, limit, reserve);
    w.ip(opt::SERVER_ID, params.server_id);
    if nak {
        if let Verdict::Nak(why) = v {
            w.option(opt::MESSAGE, why.as_bytes());
        }
    } else {
        let in_file = boot_name.is_some_and(|n| w.set_file(n.as_bytes()));
        let emit = |w: &mut Writer, code: u8, asked: bool| {
            match code {
                opt::SUBNET_MASK => w.ip(code, mask(r.mask_bits)),
                opt::ROUTER => r.router.is_some_and(|a| w.ip(code, a)),
                opt::DNS if r.dns.is_empty() => w.ip(code, params.server_id),
                opt::DNS => w.ips(code, r.dns),
                opt::HOST_NAME => !r.hostname.is_empty() && w.option(code, r.hostname.as_bytes()),
                opt::DOMAIN_NAME => !r.domain.is_empty() && w.option(code, r.domain.as_bytes()),
                opt::BROADCAST if asked => {
                    let b = u32::from(r.ip) | !u32::from(mask(r.mask_bits));
                    w.ip(code, Ipv4Addr::from(b))
                }
                opt::LEASE_TIME if !inform => w.u32(code, params.lease_secs),
                opt::RENEWAL if !inform => w.u32(code, params.lease_secs / 2),
                opt::REBINDING if !inform => {
                    w.u32(code, (u64::from(params.lease_secs) * 7 / 8) as u32)
                }
                opt::VENDOR_CLASS if http_client => w.option(code, b"HTTPClient"),
                opt::BOOTFILE if asked || !in_file || http_client => {
                    boot_name.is_some_and(|n| w.option(code, n.as_bytes()))
                }
                opt::TFTP_SERVER if asked && matches!(params.boot, BootFile::Tftp(_)) => {
                    let mut s = [0u8; 15];
                    let n = {
                        use std::io::Write;
                        let mut c = std::io::Cursor::new(&mut s[..]);
                        let _ = write!(c, "{}", params.server_id);
                        c.position() as usize
                    };
                    w.option(code, &s[..n])
                }
                _ => false,
            };
        };
        for &code in p.param_list {
            emit(&mut w, code, true);
        }
        for code in DEFAULT_OPTIONS {
            emit(&mut w, code, false);
        }
        if http_client {
            emit(&mut w, opt::VENDOR_CLASS, false);
        }
        if boot_name.is_some() {
            emit(&mut w, opt::BOOTFILE, false);
        }
    }
    if let Some(c) = p.client_id {
        w.trailing(opt::CLIENT_ID, c);
    }
    if let Some(c) = p.relay_info {
        w.trailing(opt::RELAY_INFO, c);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::super::wire::tests::request;
    use super::*;
    use dhcproto::v4::{self, DhcpOption, OptionCode};
    use dhcproto::Decodable;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc];
    const DNS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];
    const HEAD: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn res(net_ok: bool) -> Reservation<'static> {
        Reservation {
            who: Who::Node,
            ip: Ipv4Addr::new(10, 0, 0, 100),
            hostname: Cow::Borrowed("n0"),
            mask_bits: 24,
            router: Some(Ipv4Addr::new(10, 0, 0, 254)),
            dns: &DNS,
            domain: "cluster.local",
            net_ok,
        }
    }

    fn ours(a: Ipv4Addr) -> bool {
        a == HEAD
    }

    /// Build the reply and decode it with an independent implementation (dhcproto).
    fn reply(p: &Packet, v: Verdict, r: &Reservation, boot: &BootFile) -> v4::Message {
        let mut buf = Vec::new();
        let n = build(
            &mut buf,
            p,
            v,
            r,
            &ReplyParams {
                server_id: HEAD,
                lease_secs: 3600,
                boot,
            },
        );
        assert!(n >= 300 && n == buf.len());
        v4::Message::decode(&mut dhcproto::Decoder::new(&buf)).unwrap()
    }

    #[test]
    fn discover_gets_an_offer_with_everything() {
        let b = request(
            MAC,
            MsgType::Discover,
            &[(opt::PARAM_LIST, &[6, 3, 1, 15, 12, 28])],
        );
        let p = Packet::parse(&b).unwrap();
        let r = res(true);
        assert_eq!(decide(&p, &r, ours), Verdict::Offer);
        let m = reply(&p, Verdict::Offer, &r, &BootFile::None);
        assert_eq!(m.opcode(), v4::Opcode::BootReply);
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.yiaddr(), r.ip);
        assert_eq!(m.siaddr(), HEAD);
        assert_eq!(&m.chaddr()[..6], &MAC);
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(v4::MessageType::Offer));
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(HEAD))
        );
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 254)]))
        );
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(DNS.to_vec()))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("n0".into()))
        );
        assert_eq!(
            o.get(OptionCode::DomainName),
            Some(&DhcpOption::DomainName("cluster.local".into()))
        );
        assert_eq!(
            o.get(OptionCode::BroadcastAddr),
            Some(&DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 0, 0, 255)))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
        assert_eq!(
            o.get(OptionCode::Rebinding),
            Some(&DhcpOption::Rebinding(3150))
        );
    }

    #[test]
    fn requested_options_come_first_in_their_order() {
        let b = request(MAC, MsgType::Discover, &[(opt::PARAM_LIST, &[15, 6, 1])]);
        let p = Packet::parse(&b).unwrap();
        let mut buf = Vec::new();
        let boot = BootFile::None;
        build(
            &mut buf,
            &p,
            Verdict::Offer,
            &res(true),
            &ReplyParams {
                server_id: HEAD,
                lease_secs: 60,
                boot: &boot,
            },
        );
        let mut codes = Vec::new();
        let mut i = 240;
        while buf[i] != 255 {
            codes.push(buf[i]);
            i += 2 + buf[i + 1] as usize;
        }
        assert_eq!(&codes[..5], &[53, 54, 15, 6, 1]);
        assert!(codes.contains(&51) && codes.contains(&12));
    }

    #[test]
    fn request_states() {
        let r = res(true);
        let req = |opts: &[(u8, &[u8])], ciaddr: Option<[u8; 4]>| {
            let mut b = request(MAC, MsgType::Request, opts);
            if let Some(c) = ciaddr {
                b[12..16].copy_from_slice(&c);
            }
            b
        };
        // SELECTING, our server id, the reserved address.
        let b = req(&[(50, &[10, 0, 0, 100]), (54, &[10, 0, 0, 1])], None);
        assert_eq!(decide(&Packet::parse(&b).unwrap(), &r, ours), Verdict::Ack);
        // SELECTING another server: silence.
        let b = req(&[(50, &[10, 0, 0, 100]), (54, &[10, 0, 0, 9])], None);
        assert!(matches!(
            decide(&Packet::parse(&b).unwrap(), &r, ours),
            Verdict::Ignore(_)
        ));
        // INIT-REBOOT with a stale address: NAK.
        let b = req(&[(50, &[10, 0, 0, 7])], None);
        let p = Packet::parse(&b).unwrap();
        let v = decide(&p, &r, ours);
        assert!(matches!(v, Verdict::Nak(_)));
        assert_eq!(destination(&p, v, 67, 68), Dest::Broadcast(68));
        let m = reply(&p, v, &r, &BootFile::Tftp(BIOS_LOADER));
        assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Nak));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(m.fname().is_none_or(|f| f.iter().all(|b| *b == 0)));
        // RENEWING: ciaddr, unicast reply.
        let b = req(&[], Some([10, 0, 0, 100]));
        let p = Packet::parse(&b).unwrap();
        assert_eq!(decide(&p, &r, ours), Verdict::Ack);
        assert_eq!(
            destination(&p, Verdict::Ack, 67, 68),
            Dest::Unicast(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 68))
        );
        // RENEWING with someone else's address.
        let b = req(&[], Some([10, 0, 0, 101]));
        assert!(matches!(
            decide(&Packet::parse(&b).unwrap(), &r, ours),
            Verdict::Nak(_)
        ));
        // Wrong network: NAK a request, ignore a discover.
        let b = req(&[(50, &[10, 0, 0, 100])], None);
        assert!(matches!(
            decide(&Packet::parse(&b).unwrap(), &res(false), ours),
            Verdict::Nak(_)
        ));
        let b = request(MAC, MsgType::Discover, &[]);
        assert!(matches!(
            decide(&Packet::parse(&b).unwrap(), &res(false), ours),
            Verdict::Ignore(_)
        ));
        // No address at all.
        let b = req(&[], None);
        assert!(matches!(
            decide(&Packet::parse(&b).unwrap(), &r, ours),
            Verdict::Nak(_)
        ));
    }

    #[test]
    fn inform_decline_release() {
        let r = res(true);
        let mut b = request(MAC, MsgType::Inform, &[]);
        b[12..16].copy_from_slice(&[10, 0, 0, 100]);
        let p = Packet::parse(&b).unwrap();
        assert_eq!(decide(&p, &r, ours), Verdict::Inform);
        let m = reply(&p, Verdict::Inform, &r, &BootFile::None);
        assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.ciaddr(), r.ip);
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(m.opts().get(OptionCode::SubnetMask).is_some());
        let b = request(
            MAC,
            MsgType::Decline,
            &[(50, &[10, 0, 0, 100]), (54, &[10, 0, 0, 1])],
        );
        assert_eq!(
            decide(&Packet::parse(&b).unwrap(), &r, ours),
            Verdict::Decline
        );
        let b = request(MAC, MsgType::Release, &[(54, &[10, 0, 0, 1])]);
        assert_eq!(
            decide(&Packet::parse(&b).unwrap(), &r, ours),
            Verdict::Release
        );
        let b = request(MAC, MsgType::Offer, &[]);
        assert!(matches!(
            decide(&Packet::parse(&b).unwrap(), &r, ours),
            Verdict::Ignore(_)
        ));
    }

    #[test]
    fn client_types_and_boot_files() {
        let ct = |opts: &[(u8, &[u8])]| {
            let b = request(MAC, MsgType::Discover, opts);
            client_type(&Packet::parse(&b).unwrap())
        };
        assert_eq!(ct(&[(93, &[0, 0])]), ClientType::Pxe(BIOS_LOADER));
        assert_eq!(ct(&[(93, &[0, 7])]), ClientType::Pxe(UEFI_LOADER));
        assert_eq!(ct(&[(93, &[0, 9])]), ClientType::Pxe(UEFI_LOADER));
        assert_eq!(ct(&[(93, &[0, 16])]), ClientType::UefiHttp);
        assert_eq!(ct(&[(93, &[0, 11])]), ClientType::PxeUnsupported(11));
        assert_eq!(ct(&[(93, &[0, 0]), (77, b"iPXE")]), ClientType::Ipxe);
        assert_eq!(ct(&[(93, &[0, 7]), (175, &[1, 1, 1])]), ClientType::Ipxe);
        assert_eq!(
            ct(&[(60, b"PXEClient:Arch:00000")]),
            ClientType::Pxe(BIOS_LOADER)
        );
        assert_eq!(ct(&[]), ClientType::Plain);
        // No option 93: the architecture in the vendor class counts.
        assert_eq!(
            ct(&[(60, b"PXEClient:Arch:00007:UNDI:003016")]),
            ClientType::Pxe(UEFI_LOADER)
        );
        assert_eq!(
            ct(&[(60, b"HTTPClient:Arch:00016:UNDI:003001")]),
            ClientType::UefiHttp
        );
        assert_eq!(
            ct(&[(60, b"PXEClient:Arch:00011")]),
            ClientType::PxeUnsupported(11)
        );
        assert_eq!(
            ct(&[(60, b"PXEClient:Arch:x")]),
            ClientType::Pxe(BIOS_LOADER)
        );
        // Option 93 wins over the vendor class.
        assert_eq!(
            ct(&[(93, &[0, 7]), (60, b"PXEClient:Arch:00000")]),
            ClientType::Pxe(UEFI_LOADER)
        );

        let r = res(true);
        // TFTP loader: in the file field, next-server set.
        let b = request(MAC, MsgType::Discover, &[(93, &[0, 0])]);
        let p = Packet::parse(&b).unwrap();
        let m = reply(&p, Verdict::Offer, &r, &BootFile::Tftp(BIOS_LOADER));
        let f = m.fname().unwrap();
        assert_eq!(&f[..BIOS_LOADER.len()], BIOS_LOADER.as_bytes());
        assert!(f[BIOS_LOADER.len()..].iter().all(|b| *b == 0));
        assert_eq!(m.siaddr(), HEAD);
        // UEFI HTTP boot: URL and vendor class HTTPClient.
        let url = "http://10.0.0.1:8740/boot/ipxe.efi".to_string();
        let b = request(MAC, MsgType::Discover, &[(93, &[0, 16]), (55, &[1, 67])]);
        let p = Packet::parse(&b).unwrap();
        let boot = BootFile::Url {
            url: url.clone(),
            http_client: true,
        };
        let m = reply(&p, Verdict::Offer, &r, &boot);
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        assert_eq!(
            m.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(url.as_bytes().to_vec()))
        );
        // A long iPXE URL does not fit the file field: option 67 carries it.
        let long = format!("http://10.0.0.1:8740/boot/ipxe?mac={}", "x".repeat(150));
        let boot = BootFile::Url {
            url: long.clone(),
            http_client: false,
        };
        let b = request(
            MAC,
            MsgType::Request,
            &[(50, &[10, 0, 0, 100]), (77, b"iPXE")],
        );
        let p = Packet::parse(&b).unwrap();
        let m = reply(&p, Verdict::Ack, &r, &boot);
        assert_eq!(
            m.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(long.as_bytes().to_vec()))
        );
        assert!(m.opts().get(OptionCode::ClassIdentifier).is_none());
        // Hosts and BMCs: no next-server.
        let mut h = res(true);
        h.who = Who::Host;
        let b = request(MAC, MsgType::Discover, &[]);
        let m = reply(
            &Packet::parse(&b).unwrap(),
            Verdict::Offer,
            &h,
            &BootFile::None,
        );
        assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(m.fname().is_none_or(|f| f.iter().all(|b| *b == 0)));
    }

    #[test]
    fn relayed_replies_go_to_the_relay_and_echo_option_82() {
        let mut b = request(
            MAC,
            MsgType::Discover,
            &[
                (61, &[1, 0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]),
                (82, &[1, 3, b'a', b'b', b'c']),
            ],
        );
        b[24..28].copy_from_slice(&[10, 9, 0, 1]);
        let p = Packet::parse(&b).unwrap();
        assert_eq!(
            destination(&p, Verdict::Offer, 67, 68),
            Dest::Relay(SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), 67))
        );
        let m = reply(&p, Verdict::Offer, &res(true), &BootFile::None);
        assert_eq!(m.giaddr(), Ipv4Addr::new(10, 9, 0, 1));
        assert!(m.opts().get(OptionCode::RelayAgentInformation).is_some());
        assert!(m.opts().get(OptionCode::ClientIdentifier).is_some());
        let m = reply(&p, Verdict::Nak("x"), &res(true), &BootFile::None);
        assert!(m.flags().broadcast());
    }

    #[test]
    fn small_max_size_keeps_essentials() {
        let long = "a".repeat(250);
        let mut r = res(true);
        r.hostname = Cow::Owned(long.clone());
        r.domain = "b.example";
        let b = request(MAC, MsgType::Discover, &[(57, &[2, 64])]);
        let p = Packet::parse(&b).unwrap();
        let mut buf = Vec::new();
        let boot = BootFile::None;
        let n = build(
            &mut buf,
            &p,
            Verdict::Offer,
            &r,
            &ReplyParams {
                server_id: HEAD,
                lease_secs: 60,
                boot: &boot,
            },
        );
        assert!(n <= 548, "{n}");
        let m = v4::Message::decode(&mut dhcproto::Decoder::new(&buf)).unwrap();
        assert!(m.opts().get(OptionCode::ServerIdentifier).is_some());
        assert!(m.opts().get(OptionCode::SubnetMask).is_some());
    }

    #[test]
    fn masks() {
        assert_eq!(mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(mask(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(mask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}

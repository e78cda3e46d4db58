//! DHCPv4 on the wire (RFC 2131, RFC 2132): a zero-copy parser for requests and a writer for
//! replies into a caller's buffer. Nothing here allocates; every index into packet data is
//! checked, so a malformed datagram is an `Err`, never a panic.

use std::net::Ipv4Addr;

/// BOOTP fixed header (236 bytes) plus the magic cookie.
pub const HEADER_LEN: usize = 236;
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Smallest reply we send (some PXE ROMs drop shorter BOOTP packets).
pub const MIN_REPLY: usize = 300;
/// Largest DHCP message every client must accept: 576-byte IP datagram minus IP and UDP headers.
pub const DEFAULT_MAX_MESSAGE: usize = 576 - 28;
/// Largest reply we ever build (a 1500-byte Ethernet MTU minus IP and UDP headers).
pub const MAX_MESSAGE: usize = 1500 - 28;

pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// Broadcast bit of the `flags` field.
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    Other(u8),
}

impl MsgType {
    pub fn from_u8(v: u8) -> MsgType {
        match v {
            1 => MsgType::Discover,
            2 => MsgType::Offer,
            3 => MsgType::Request,
            4 => MsgType::Decline,
            5 => MsgType::Ack,
            6 => MsgType::Nak,
            7 => MsgType::Release,
            8 => MsgType::Inform,
            o => MsgType::Other(o),
        }
    }
    pub fn code(self) -> u8 {
        match self {
            MsgType::Discover => 1,
            MsgType::Offer => 2,
            MsgType::Request => 3,
            MsgType::Decline => 4,
            MsgType::Ack => 5,
            MsgType::Nak => 6,
            MsgType::Release => 7,
            MsgType::Inform => 8,
            MsgType::Other(o) => o,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            MsgType::Discover => "DISCOVER",
            MsgType::Offer => "OFFER",
            MsgType::Request => "REQUEST",
            MsgType::Decline => "DECLINE",
            MsgType::Ack => "ACK",
            MsgType::Nak => "NAK",
            MsgType::Release => "RELEASE",
            MsgType::Inform => "INFORM",
            MsgType::Other(_) => "OTHER",
        }
    }
}

/// Option codes used here.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MSG_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAM_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const RENEWAL: u8 = 58;
    pub const REBINDING: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER: u8 = 66;
    pub const BOOTFILE: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// Why a datagram is not a usable DHCP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooShort,
    BadCookie,
    BadHlen,
    OptionOverrun,
    BadOptionLength(u8),
    NoMessageType,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::TooShort => f.write_str("shorter than a BOOTP header"),
            Malformed::BadCookie => f.write_str("no DHCP magic cookie"),
            Malformed::BadHlen => f.write_str("hardware address length over 16"),
            Malformed::OptionOverrun => f.write_str("an option runs past the end"),
            Malformed::BadOptionLength(c) => write!(f, "option {c} has a wrong length"),
            Malformed::NoMessageType => f.write_str("no DHCP message type (plain BOOTP)"),
        }
    }
}

/// A parsed request: the fixed header and the options the server looks at, borrowed from
/// the receive buffer.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: &'a [u8; 16],
    pub msg_type: MsgType,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub param_list: &'a [u8],
    pub max_size: Option<u16>,
    pub vendor_class: &'a [u8],
    pub user_class: &'a [u8],
    pub client_id: Option<&'a [u8]>,
    pub relay_info: Option<&'a [u8]>,
    /// First client system architecture type (option 93).
    pub arch: Option<u16>,
    /// Option 175 (iPXE's encapsulated options) is present.
    pub ipxe_encap: bool,
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

impl<'a> Packet<'a> {
    /// Parse one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, Malformed> {
        if buf.len() < HEADER_LEN + 4 {
            return Err(Malformed::TooShort);
        }
        if buf.get(HEADER_LEN..HEADER_LEN + 4) != Some(&MAGIC[..]) {
            return Err(Malformed::BadCookie);
        }
        let at4 = |i: usize| ip4(buf.get(i..i + 4).unwrap_or(&[0; 4]));
        let hlen = buf[2];
        if hlen > 16 {
            return Err(Malformed::BadHlen);
        }
        let chaddr: &[u8; 16] = buf
            .get(28..44)
            .and_then(|s| s.try_into().ok())
            .ok_or(Malformed::TooShort)?;
        let mut p = Packet {
            op: buf[0],
            htype: buf[1],
            hlen,
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            flags: u16::from_be_bytes([buf[10], buf[11]]),
            ciaddr: at4(12).unwrap_or(Ipv4Addr::UNSPECIFIED),
            giaddr: at4(24).unwrap_or(Ipv4Addr::UNSPECIFIED),
            chaddr,
            msg_type: MsgType::Other(0),
            requested_ip: None,
            server_id: None,
            param_list: &[],
            max_size: None,
            vendor_class: &[],
            user_class: &[],
            client_id: None,
            relay_info: None,
            arch: None,
            ipxe_encap: false,
        };
        let mut msg_type = None;
        let overload = p.options(&buf[HEADER_LEN + 4..], &mut msg_type)?;
        // Option overload (52): more options in the `file` (1), `sname` (2) or both (3) fields.
        if overload & 1 != 0 {
            p.options(&buf[108..236], &mut msg_type)?;
        }
        if overload & 2 != 0 {
            p.options(&buf[44..108], &mut msg_type)?;
        }
        p.msg_type = MsgType::from_u8(msg_type.ok_or(Malformed::NoMessageType)?);
        Ok(p)
    }

    /// Read one options area; returns the overload value if option 52 was in it.
    fn options(&mut self, mut area: &'a [u8], msg_type: &mut Option<u8>) -> Result<u8, Malformed> {
        let mut overload = 0;
        while let Some((&code, rest)) = area.split_first() {
            match code {
                opt::PAD => {
                    area = rest;
                    continue;
                }
                opt::END => break,
                _ => {}
            }
            let (&len, rest) = rest.split_first().ok_or(Malformed::OptionOverrun)?;
            let len = len as usize;
            if rest.len() < len {
                return Err(Malformed::OptionOverrun);
            }
            let (v, rest) = rest.split_at(len);
            area = rest;
            let bad = Err(Malformed::BadOptionLength(code));
            // The first instance of an option counts (RFC 3396 concatenation is not needed
            // for anything read here).
            match code {
                opt::MSG_TYPE => match v {
                    [t] => {
                        msg_type.get_or_insert(*t);
                    }
                    _ => return bad,
                },
                opt::REQUESTED_IP => match ip4(v) {
                    Some(a) => {
                        self.requested_ip.get_or_insert(a);
                    }
                    None => return bad,
                },
                opt::SERVER_ID => match ip4(v) {
                    Some(a) => {
                        self.server_id.get_or_insert(a);
                    }
                    None => return bad,
                },
                opt::MAX_SIZE => match v {
                    [a, b] => {
                        self.max_size.get_or_insert(u16::from_be_bytes([*a, *b]));
                    }
                    _ => return bad,
                },
                opt::OVERLOAD => match v {
                    [o] if *o <= 3 => overload = *o,
                    _ => return bad,
                },
                opt::PARAM_LIST if self.param_list.is_empty() => self.param_list = v,
                opt::VENDOR_CLASS if self.vendor_class.is_empty() => self.vendor_class = v,
                opt::USER_CLASS if self.user_class.is_empty() => self.user_class = v,
                opt::CLIENT_ID => {
                    self.client_id.get_or_insert(v);
                }
                opt::RELAY_INFO => {
                    self.relay_info.get_or_insert(v);
                }
                opt::CLIENT_ARCH => match v {
                    [a, b, ..] if v.len() % 2 == 0 => {
                        self.arch.get_or_insert(u16::from_be_bytes([*a, *b]));
                    }
                    _ => return bad,
                },
                opt::IPXE_ENCAP => self.ipxe_encap = true,
                _ => {}
            }
        }
        Ok(overload)
    }

    /// The client's Ethernet address, when the hardware type is Ethernet.
    pub fn mac(&self) -> Option<[u8; 6]> {
        if self.htype != 1 || self.hlen != 6 {
            return None;
        }
        self.chaddr[..6].try_into().ok()
    }

    /// iPXE identifies itself by user class "iPXE" (option 77) or its option 175.
    pub fn is_ipxe(&self) -> bool {
        self.ipxe_encap || self.user_class.windows(4).any(|w| w == b"iPXE")
    }

    /// The vendor class (option 60) starts with `prefix`.
    pub fn vendor_is(&self, prefix: &[u8]) -> bool {
        self.vendor_class.starts_with(prefix)
    }
}

/// Bytes of the options every reply carries besides End: message type (53, three bytes) and
/// server identifier (54, six bytes).
const ESSENTIAL: usize = 3 + 6;

/// Writes a reply into a buffer, staying within a size limit: options that do not fit are
/// left out (and counted in `skipped`).
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
    /// Bytes kept free for options that must go last (client id, relay info) and End.
    reserve: usize,
    written: [u64; 4],
    pub skipped: u32,
}

pub struct Header {
    pub msg_type: MsgType,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub htype: u8,
    pub hlen: u8,
    pub chaddr: [u8; 16],
}

impl<'b> Writer<'b> {
    /// Start a reply: the fixed header, the cookie and option 53.
    pub fn new(buf: &'b mut Vec<u8>, h: &Header, limit: usize, reserve: usize) -> Writer<'b> {
        buf.clear();
        buf.extend_from_slice(&[BOOTREPLY, h.htype, h.hlen, 0]);
        buf.extend_from_slice(&h.xid.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&h.flags.to_be_bytes());
        for a in [h.ciaddr, h.yiaddr, h.siaddr, h.giaddr] {
            buf.extend_from_slice(&a.octets());
        }
        buf.extend_from_slice(&h.chaddr);
        buf.resize(HEADER_LEN, 0);
        buf.extend_from_slice(&MAGIC);
        let limit = limit.clamp(DEFAULT_MAX_MESSAGE, MAX_MESSAGE);
        // What is kept for the trailing options never crowds out the message type and the
        // server identifier: a client id and relay information that do not fit beside them
        // are left out instead.
        let room = limit - (HEADER_LEN + MAGIC.len()) - ESSENTIAL - 1;
        let mut w = Writer {
            buf,
            limit,
            reserve: reserve.min(room) + 1,
            written: [0; 4],
            skipped: 0,
        };
        w.option(opt::MSG_TYPE, &[h.msg_type.code()]);
        w
    }

    /// Put a string into the `file` field (NUL-terminated); false if it is too long.
    pub fn set_file(&mut self, name: &[u8]) -> bool {
        if name.len() > 127 {
            return false;
        }
        self.buf[108..108 + name.len()].copy_from_slice(name);
        true
    }

    pub fn has(&self, code: u8) -> bool {
        self.written[(code >> 6) as usize] & (1 << (code & 63)) != 0
    }

    /// Append an option unless it was written already or would not fit.
    pub fn option(&mut self, code: u8, value: &[u8]) -> bool {
        if self.has(code) || value.len() > 255 {
            return false;
        }
        if self.buf.len() + 2 + value.len() + self.reserve > self.limit {
            self.skipped += 1;
            return false;
        }
        self.buf.push(code);
        self.buf.push(value.len() as u8);
        self.buf.extend_from_slice(value);
        self.written[(code >> 6) as usize] |= 1 << (code & 63);
        true
    }

    pub fn ip(&mut self, code: u8, ip: Ipv4Addr) -> bool {
        self.option(code, &ip.octets())
    }

    /// An option holding several addresses (at most 63).
    pub fn ips(&mut self, code: u8, ips: &[Ipv4Addr]) -> bool {
        let mut v = [0u8; 252];
        let n = ips.len().min(63);
        for (i, a) in ips.iter().take(n).enumerate() {
            v[i * 4..i * 4 + 4].copy_from_slice(&a.octets());
        }
        self.option(code, &v[..n * 4])
    }

    pub fn u32(&mut self, code: u8, v: u32) -> bool {
        self.option(code, &v.to_be_bytes())
    }

    /// An option written after everything else, in the space `reserve` kept for it.
    pub fn trailing(&mut self, code: u8, value: &[u8]) {
        let need = 2 + value.len();
        // One byte stays kept for End.
        self.reserve = self.reserve.saturating_sub(need).max(1);
        self.option(code, value);
    }

    /// End the options and pad to the minimum BOOTP length; returns the length.
    pub fn finish(self) -> usize {
        self.buf.push(opt::END);
        if self.buf.len() < MIN_REPLY {
            self.buf.resize(MIN_REPLY, 0);
        }
        self.buf.len()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Build a request the way a client would (for tests).
    pub fn request(mac: [u8; 6], msg: MsgType, options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = BOOTREQUEST;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&mac);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&[opt::MSG_TYPE, 1, msg.code()]);
        for (c, v) in options {
            b.push(*c);
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        b.push(opt::END);
        b
    }

    #[test]
    fn parses_a_request() {
        let b = request(
            [0x52, 0x54, 0, 1, 2, 3],
            MsgType::Request,
            &[
                (opt::REQUESTED_IP, &[10, 0, 0, 5]),
                (opt::SERVER_ID, &[10, 0, 0, 1]),
                (opt::PARAM_LIST, &[1, 3, 6]),
                (opt::MAX_SIZE, &[5, 220]),
                (opt::CLIENT_ARCH, &[0, 7]),
                (opt::USER_CLASS, b"iPXE"),
                (opt::CLIENT_ID, &[1, 0x52, 0x54, 0, 1, 2, 3]),
            ],
        );
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.msg_type, MsgType::Request);
        assert_eq!(p.mac(), Some([0x52, 0x54, 0, 1, 2, 3]));
        assert_eq!(p.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(p.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(p.param_list, &[1, 3, 6]);
        assert_eq!(p.max_size, Some(1500));
        assert_eq!(p.arch, Some(7));
        assert!(p.is_ipxe());
        assert_eq!(p.client_id.map(|c| c.len()), Some(7));
        assert_eq!(p.xid, 0x1234_5678);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(Packet::parse(&[]).unwrap_err(), Malformed::TooShort);
        assert_eq!(Packet::parse(&[1; 100]).unwrap_err(), Malformed::TooShort);
        assert_eq!(Packet::parse(&[1; 400]).unwrap_err(), Malformed::BadCookie);
        let mut b = request([1, 2, 3, 4, 5, 6], MsgType::Discover, &[]);
        b.pop();
        b.extend_from_slice(&[opt::PARAM_LIST, 200, 1, 2]);
        assert_eq!(Packet::parse(&b).unwrap_err(), Malformed::OptionOverrun);
        let b = request(
            [1, 2, 3, 4, 5, 6],
            MsgType::Discover,
            &[(opt::SERVER_ID, &[1, 2])],
        );
        assert_eq!(
            Packet::parse(&b).unwrap_err(),
            Malformed::BadOptionLength(opt::SERVER_ID)
        );
        let mut b = request([1, 2, 3, 4, 5, 6], MsgType::Discover, &[]);
        b[HEADER_LEN + 4..].copy_from_slice(&[0, 0, 0, 255]);
        assert_eq!(Packet::parse(&b).unwrap_err(), Malformed::NoMessageType);
        let mut b = request([1, 2, 3, 4, 5, 6], MsgType::Discover, &[]);
        b[2] = 17;
        assert_eq!(Packet::parse(&b).unwrap_err(), Malformed::BadHlen);
        // Every truncation and every single-byte corruption of a valid packet is handled.
        let good = request(
            [1, 2, 3, 4, 5, 6],
            MsgType::Discover,
            &[
                (opt::PARAM_LIST, &[1, 3]),
                (opt::CLIENT_ARCH, &[0, 0]),
                (opt::OVERLOAD, &[3]),
            ],
        );
        for n in 0..good.len() {
            let _ = Packet::parse(&good[..n]);
            for v in [0u8, 1, 3, 52, 53, 255] {
                let mut c = good.clone();
                c[n] = v;
                let _ = Packet::parse(&c);
            }
        }
    }

    #[test]
    fn reads_overloaded_options() {
        let mut b = request(
            [1, 2, 3, 4, 5, 6],
            MsgType::Discover,
            &[(opt::OVERLOAD, &[1])],
        );
        b[108..113].copy_from_slice(&[opt::CLIENT_ARCH, 2, 0, 16, opt::END]);
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.arch, Some(16));
    }

    #[test]
    fn writer_respects_limit() {
        let mut buf = Vec::new();
        let h = Header {
            msg_type: MsgType::Ack,
            xid: 7,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            htype: 1,
            hlen: 6,
            chaddr: [0; 16],
        };
        let mut w = Writer::new(&mut buf, &h, 0, 10);
        assert!(w.option(opt::HOST_NAME, &[b'a'; 200]));
        assert!(!w.option(opt::HOST_NAME, b"again"));
        assert!(!w.option(opt::DOMAIN_NAME, &[b'b'; 100]));
        assert_eq!(w.skipped, 1);
        w.trailing(opt::CLIENT_ID, &[1, 2, 3, 4, 5, 6, 7]);
        let n = w.finish();
        assert!(n <= DEFAULT_MAX_MESSAGE, "{n}");
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.msg_type, MsgType::Ack);
        assert_eq!(p.client_id, Some(&[1, 2, 3, 4, 5, 6, 7][..]));
    }

    #[test]
    fn long_trailing_options_never_crowd_out_the_message_type() {
        // A client id and relay information of 255 bytes each (found by fuzzing: the reply
        // had no message type, so no client could take it).
        let h = Header {
            msg_type: MsgType::Offer,
            xid: 7,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            htype: 1,
            hlen: 6,
            chaddr: [0; 16],
        };
        let (client_id, relay) = ([7u8; 255], [8u8; 255]);
        for limit in [0, 600, MAX_MESSAGE] {
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf, &h, limit, 2 * (2 + 255));
            assert!(w.ip(opt::SERVER_ID, Ipv4Addr::new(10, 0, 0, 1)));
            w.option(opt::HOST_NAME, b"n0");
            w.trailing(opt::CLIENT_ID, &client_id);
            w.trailing(opt::RELAY_INFO, &relay);
            let n = w.finish();
            assert!(
                n <= limit.clamp(DEFAULT_MAX_MESSAGE, MAX_MESSAGE),
                "{limit}: {n}"
            );
            let p = Packet::parse(&buf).unwrap();
            assert_eq!(p.msg_type, MsgType::Offer);
            assert_eq!(p.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
            assert_eq!(p.client_id, Some(&client_id[..]));
            // Both fit only in a reply larger than the 548 bytes every client takes.
            assert_eq!(p.relay_info.is_some(), limit == MAX_MESSAGE, "{limit}");
        }
    }
}

//! DHCP: a datagram through `Packet::parse`, then what the server does with a client it knows
//! (`client_type`, `decide`, `build`, `destination`), for several kinds of reservation and
//! boot file. The cache lookup in between (MAC → reservation) is a map read.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use dhcproto::Decodable;
use wulfd::dhcp::logic::{
    self, BootFile, ClientType, Dest, ReplyParams, Reservation, Verdict, Who,
};
use wulfd::dhcp::wire::{MsgType, Packet, BOOTREPLY, DEFAULT_MAX_MESSAGE, MAX_MESSAGE, MIN_REPLY};

const HEAD: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DNS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];

fn reservations() -> Vec<Reservation<'static>> {
    let node = Reservation {
        who: Who::Node,
        ip: Ipv4Addr::new(10, 0, 0, 100),
        hostname: Cow::Borrowed("n0"),
        mask_bits: 24,
        router: Some(Ipv4Addr::new(10, 0, 0, 254)),
        dns: &DNS,
        domain: "cluster.local",
        net_ok: true,
    };
    vec![
        node.clone(),
        Reservation {
            net_ok: false,
            ..node.clone()
        },
        Reservation {
            who: Who::Host,
            hostname: Cow::Owned("h".repeat(250)),
            router: None,
            dns: &[],
            domain: "",
            mask_bits: 0,
            ..node.clone()
        },
        Reservation {
            who: Who::Bmc,
            hostname: Cow::Borrowed(""),
            mask_bits: 32,
            domain: "d.example",
            ..node
        },
    ]
}

/// The boot file the server would choose for this client (as `dhcp::Server::answer` does).
fn boot_for(ct: ClientType) -> BootFile {
    match ct {
        ClientType::Ipxe => BootFile::Url {
            url: "http://10.0.0.1:8740/boot/ipxe?mac=52:54:00:00:00:01".into(),
            http_client: false,
        },
        ClientType::UefiHttp => BootFile::Url {
            url: "http://10.0.0.1:8740/boot/ipxe.efi".into(),
            http_client: true,
        },
        ClientType::Pxe(f) => BootFile::Tftp(f),
        ClientType::PxeUnsupported(_) | ClientType::Plain => BootFile::None,
    }
}

pub fn dhcp(data: &[u8]) {
    let Ok(p) = Packet::parse(data) else { return };
    assert!(p.hlen <= 16);
    if let Some(mac) = p.mac() {
        assert_eq!(&mac[..], &p.chaddr[..6]);
    }
    let ct = logic::client_type(&p);
    let boots = [
        boot_for(ct),
        BootFile::None,
        BootFile::Tftp(logic::UEFI_LOADER),
        // Too long for the `file` field: only option 67 can carry it.
        BootFile::Url {
            url: format!("http://10.0.0.1:8740/boot/ipxe?mac={}", "x".repeat(200)),
            http_client: true,
        },
    ];
    let mut buf = Vec::new();
    for r in reservations() {
        let v = logic::decide(&p, &r, |a| a == HEAD);
        check_verdict(&p, &r, v);
        let dest = logic::destination(&p, v, 67, 68);
        match dest {
            Dest::Relay(a) => assert!(*a.ip() == p.giaddr && !p.giaddr.is_unspecified()),
            Dest::Unicast(a) => assert!(*a.ip() == p.ciaddr && p.giaddr.is_unspecified()),
            Dest::Broadcast(port) => assert_eq!(port, 68),
        }
        for boot in &boots {
            let params = ReplyParams {
                server_id: HEAD,
                lease_secs: 86400,
                boot,
            };
            let n = logic::build(&mut buf, &p, v, &r, &params);
            check_reply(&p, &r, v, boot, &buf, n);
        }
    }
}

fn check_verdict(p: &Packet, r: &Reservation, v: Verdict) {
    let other_server = p.server_id.is_some_and(|s| s != HEAD);
    match v {
        Verdict::Offer => assert!(p.msg_type == MsgType::Discover && r.net_ok),
        Verdict::Ack => {
            assert!(p.msg_type == MsgType::Request && r.net_ok && !other_server);
            let asked = p
                .requested_ip
                .or_else(|| (!p.ciaddr.is_unspecified()).then_some(p.ciaddr));
            assert_eq!(asked, Some(r.ip), "an ACK for an address not reserved");
        }
        Verdict::Inform => assert!(p.msg_type == MsgType::Inform && r.net_ok),
        Verdict::Nak(_) => assert!(p.msg_type == MsgType::Request && !other_server),
        Verdict::Decline => assert!(p.msg_type == MsgType::Decline && !other_server),
        Verdict::Release => assert!(p.msg_type == MsgType::Release && !other_server),
        Verdict::Ignore(_) => {}
    }
}

fn check_reply(p: &Packet, r: &Reservation, v: Verdict, boot: &BootFile, buf: &[u8], n: usize) {
    let want = match v {
        Verdict::Offer => MsgType::Offer,
        Verdict::Ack | Verdict::Inform => MsgType::Ack,
        Verdict::Nak(_) => MsgType::Nak,
        _ => {
            assert_eq!(n, 0, "a reply to a request that gets none");
            return;
        }
    };
    assert_eq!(n, buf.len());
    // Never larger than the client said it takes (option 57), nor than one Ethernet frame;
    // never shorter than BOOTP's minimum.
    let allowed = p
        .max_size
        .map_or(0, |m| usize::from(m).saturating_sub(28))
        .clamp(DEFAULT_MAX_MESSAGE, MAX_MESSAGE);
    assert!(n <= allowed, "reply of {n} bytes, client takes {allowed}");
    assert!(n >= MIN_REPLY);
    // Our own parser reads it back as the reply it is meant to be.
    let q = Packet::parse(buf).unwrap_or_else(|e| panic!("our {want:?} does not parse: {e}"));
    assert_eq!(q.op, BOOTREPLY);
    assert_eq!(q.msg_type, want);
    assert_eq!(q.xid, p.xid);
    assert_eq!((q.htype, q.hlen), (p.htype, p.hlen));
    assert_eq!(q.chaddr, p.chaddr);
    assert_eq!(q.giaddr, p.giaddr);
    let yiaddr = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
    match v {
        Verdict::Offer | Verdict::Ack => assert_eq!(yiaddr, r.ip),
        _ => assert!(yiaddr.is_unspecified()),
    }
    if want == MsgType::Nak {
        assert!(
            buf[108..236].iter().all(|b| *b == 0),
            "a NAK names a boot file"
        );
    } else if let (BootFile::Tftp(f), Who::Node) = (boot, r.who) {
        assert_eq!(&buf[108..108 + f.len()], f.as_bytes());
    }
    // An independent decoder agrees it is a well-formed DHCP message (relay information
    // the client sent is echoed as it came, which that decoder may not accept).
    if p.relay_info.is_none() {
        let m = dhcproto::v4::Message::decode(&mut dhcproto::Decoder::new(buf))
            .unwrap_or_else(|e| panic!("dhcproto cannot decode our {want:?}: {e}"));
        assert_eq!(m.xid(), p.xid);
        assert_eq!(m.opts().msg_type().map(u8::from), Some(want.code()));
    }
}

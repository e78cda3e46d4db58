//! `libnss_wulf.so.2`: the glibc NSS `ethers` database (`getent ethers`, `ether_ntohost`,
//! `ether_hostton`) answered by a wulf head over DNS. The head is authoritative for the
//! `_ethers.` pseudo-zone: TXT `<mac with dashes>._ethers.` is the name, TXT
//! `<name>._ethers.` is the MAC.
//!
//! Servers come from `/etc/wulf/nss.conf` (`server=IP[:PORT]` lines) when it exists, else
//! from the `nameserver` lines of `/etc/resolv.conf`. One UDP question per server, with a
//! short timeout. Nothing panics across the C boundary.

use std::ffi::{c_char, c_int, CStr};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::panic::catch_unwind;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// glibc's `enum nss_status`.
pub const NSS_STATUS_TRYAGAIN: c_int = -2;
pub const NSS_STATUS_UNAVAIL: c_int = -1;
pub const NSS_STATUS_NOTFOUND: c_int = 0;
pub const NSS_STATUS_SUCCESS: c_int = 1;

/// How long one server has to answer.
const TIMEOUT: Duration = Duration::from_millis(1500);
/// At most this many servers are asked.
const MAX_SERVERS: usize = 3;

/// `struct ether_addr` (netinet/ether.h).
#[repr(C)]
pub struct EtherAddr {
    pub ether_addr_octet: [u8; 6],
}

/// `struct etherent` (glibc nss: `const char *e_name; struct ether_addr e_addr;`).
#[repr(C)]
pub struct Etherent {
    pub e_name: *const c_char,
    pub e_addr: EtherAddr,
}

/// What a lookup came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Found(String),
    /// The head says there is no such name (NXDOMAIN, or no TXT).
    NotFound,
    /// No server answered, or none is configured.
    Unavailable,
}

/// The servers to ask, from the texts of /etc/wulf/nss.conf (if any) and /etc/resolv.conf.
pub fn servers(nss_conf: Option<&str>, resolv_conf: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if let Some(conf) = nss_conf {
        for line in conf.lines() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("server=") {
                let v = v.trim();
                if let Ok(sa) = v.parse::<SocketAddr>() {
                    out.push(sa);
                } else if let Ok(ip) = v.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, 53));
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    for line in resolv_conf.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some("nameserver") {
            if let Some(ip) = w.next().and_then(|s| s.parse::<IpAddr>().ok()) {
                out.push(SocketAddr::new(ip, 53));
            }
        }
    }
    out.truncate(MAX_SERVERS);
    out
}

fn configured_servers() -> Vec<SocketAddr> {
    let nss = std::fs::read_to_string("/etc/wulf/nss.conf").ok();
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    servers(nss.as_deref(), &resolv)
}

/// Ask one server for the TXT of `qname`.
fn ask(server: SocketAddr, qname: &Name) -> Answer {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let Ok(sock) = UdpSocket::bind(bind) else {
        return Answer::Unavailable;
    };
    if sock.set_read_timeout(Some(TIMEOUT)).is_err() || sock.connect(server).is_err() {
        return Answer::Unavailable;
    }
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname.clone(), RecordType::TXT));
    let id = msg.metadata.id;
    let Ok(bytes) = msg.to_vec() else {
        return Answer::Unavailable;
    };
    if sock.send(&bytes).is_err() {
        return Answer::Unavailable;
    }
    let mut buf = [0u8; 4096];
    // Skip stray datagrams with another id; the read timeout bounds each wait.
    for _ in 0..4 {
        let Ok(n) = sock.recv(&mut buf) else {
            return Answer::Unavailable;
        };
        let Ok(resp) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if resp.metadata.id != id {
            continue;
        }
        return match resp.metadata.response_code {
            ResponseCode::NoError => resp
                .answers
                .iter()
                .find_map(|r| match &r.data {
                    RData::TXT(t) => Some(t.to_string()),
                    _ => None,
                })
                .map(Answer::Found)
                .unwrap_or(Answer::NotFound),
            ResponseCode::NXDomain => Answer::NotFound,
            _ => Answer::Unavailable,
        };
    }
    Answer::Unavailable
}

/// Ask the configured servers in turn until one answers.
pub fn lookup(servers: &[SocketAddr], qname: &str) -> Answer {
    let Ok(name) = Name::from_ascii(qname) else {
        return Answer::NotFound;
    };
    for s in servers {
        match ask(*s, &name) {
            Answer::Unavailable => continue,
            a => return a,
        }
    }
    Answer::Unavailable
}

/// `aa-bb-cc-dd-ee-ff._ethers.`
pub fn mac_qname(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}._ethers.", parts.join("-"))
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A name the head could hold: letters, digits, `-`, `_` and dots, no empty label.
fn plausible_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 200
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Fill `result` with `name` (copied into `buffer`) and `mac`.
///
/// # Safety
/// `result`, `buffer` (of `buflen` bytes) and `errnop` must be valid, as glibc passes them.
unsafe fn fill(
    name: &str,
    mac: [u8; 6],
    result: *mut Etherent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
) -> c_int {
    let bytes = name.as_bytes();
    if buffer.is_null() || bytes.len() + 1 > buflen {
        *errnop = libc::ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer as *mut u8, bytes.len());
    *buffer.add(bytes.len()) = 0;
    (*result).e_name = buffer;
    (*result).e_addr.ether_addr_octet = mac;
    NSS_STATUS_SUCCESS
}

fn status_of(a: &Answer, errnop: *mut c_int) -> c_int {
    // SAFETY: glibc passes a valid errno pointer.
    unsafe {
        match a {
            Answer::NotFound => {
                *errnop = libc::ENOENT;
                NSS_STATUS_NOTFOUND
            }
            _ => {
                *errnop = libc::EAGAIN;
                NSS_STATUS_UNAVAIL
            }
        }
    }
}

/// `ether_ntohost`: the name of a MAC.
///
/// # Safety
/// Called by glibc with valid pointers.
#[no_mangle]
pub unsafe extern "C" fn _nss_wulf_getntohost_r(
    addr: *const EtherAddr,
    result: *mut Etherent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
) -> c_int {
    if addr.is_null() || result.is_null() || errnop.is_null() {
        return NSS_STATUS_UNAVAIL;
    }
    let mac = (*addr).ether_addr_octet;
    let r = catch_unwind(|| lookup(&configured_servers(), &mac_qname(&mac)));
    match r {
        Ok(Answer::Found(name)) if plausible_name(&name) => {
            fill(&name, mac, result, buffer, buflen, errnop)
        }
        Ok(Answer::Found(_)) => status_of(&Answer::NotFound, errnop),
        Ok(a) => status_of(&a, errnop),
        Err(_) => status_of(&Answer::Unavailable, errnop),
    }
}

/// `ether_hostton`: the MAC of a name.
///
/// # Safety
/// Called by glibc with valid pointers.
#[no_mangle]
pub unsafe extern "C" fn _nss_wulf_gethostton_r(
    name: *const c_char,
    result: *mut Etherent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
) -> c_int {
    if name.is_null() || result.is_null() || errnop.is_null() {
        return NSS_STATUS_UNAVAIL;
    }
    let Ok(name) = CStr::from_ptr(name).to_str() else {
        *errnop = libc::ENOENT;
        return NSS_STATUS_NOTFOUND;
    };
    let name = name.to_string();
    if !plausible_name(&name) {
        *errnop = libc::ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    let q = format!("{}._ethers.", name);
    let r = catch_unwind(|| lookup(&configured_servers(), &q));
    match r {
        Ok(Answer::Found(text)) => match parse_mac(&text) {
            Some(mac) => fill(&name, mac, result, buffer, buflen, errnop),
            None => status_of(&Answer::NotFound, errnop),
        },
        Ok(a) => status_of(&a, errnop),
        Err(_) => status_of(&Answer::Unavailable, errnop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files() {
        let r = "# x\nnameserver 10.0.0.1\nnameserver ::1\nsearch a\n";
        assert_eq!(
            servers(None, r),
            vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(
            servers(Some("server=10.9.0.1:5353\nserver=10.9.0.2\n"), r),
            vec![
                "10.9.0.1:5353".parse::<SocketAddr>().unwrap(),
                "10.9.0.2:53".parse().unwrap()
            ]
        );
        assert_eq!(servers(Some("# empty\n"), r).len(), 2);
    }

    #[test]
    fn macs() {
        assert_eq!(
            mac_qname(&[0x52, 0x54, 0, 0xab, 0, 0x0c]),
            "52-54-00-ab-00-0c._ethers."
        );
        assert_eq!(
            parse_mac("52:54:00:AB:0:c"),
            Some([0x52, 0x54, 0, 0xab, 0, 0x0c])
        );
        assert_eq!(parse_mac("52:54:00:ab:00"), None);
        assert_eq!(parse_mac("52:54:00:ab:00:0c:00"), None);
        assert_eq!(parse_mac("zz:54:00:ab:00:0c"), None);
        assert!(plausible_name("sw1.cluster.local"));
        assert!(!plausible_name("a..b"));
        assert!(!plausible_name("a b"));
    }

    #[test]
    fn no_server_is_unavailable() {
        assert_eq!(lookup(&[], "n0._ethers."), Answer::Unavailable);
    }
}

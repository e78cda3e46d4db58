//! TFTP packets (RFC 1350) and option negotiation (RFC 2347, 2348, 2349, 7440).
//!
//! Parsing never panics: every malformed packet becomes an error value.

use std::time::Duration;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// Error codes (RFC 1350 section 5, RFC 2347).
pub const ERR_UNDEFINED: u16 = 0;
pub const ERR_NOT_FOUND: u16 = 1;
pub const ERR_ACCESS: u16 = 2;
pub const ERR_ILLEGAL: u16 = 4;

/// Smallest and largest block sizes (RFC 2348).
pub const MIN_BLKSIZE: u64 = 8;
pub const MAX_BLKSIZE: u64 = 65464;
/// Block size without the option.
pub const DEFAULT_BLKSIZE: usize = 512;
/// Largest window we agree to (RFC 7440 allows up to 65535; we answer with less).
pub const MAX_WINDOWSIZE: u64 = 64;
/// Upper bound on the bytes one transfer holds in its window.
pub const MAX_WINDOW_BYTES: u64 = 512 * 1024;

/// Transfer mode of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// A read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The file name exactly as sent (bytes; not necessarily UTF-8).
    pub filename: Vec<u8>,
    pub mode: Mode,
    /// Options as sent, names lower-cased, in order; the first of a repeated name wins.
    pub options: Vec<(String, String)>,
}

/// What arrived on the server port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read(ReadRequest),
    /// A write request: refused (read-only server).
    Write,
    /// DATA, ACK, ERROR or OACK on the server port: not ours, dropped without an answer.
    Stray,
}

/// Why a request could not be understood; answered with an error packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Shorter than an opcode: dropped silently.
    TooShort,
    /// An opcode TFTP does not have.
    UnknownOpcode(u16),
    /// A read request without its NUL-terminated file name and mode.
    Malformed,
    /// A mode other than octet or netascii (like "mail").
    UnsupportedMode(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::TooShort => write!(f, "packet too short"),
            RequestError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            RequestError::Malformed => write!(f, "malformed request"),
            RequestError::UnsupportedMode(m) => write!(f, "unsupported mode '{m}'"),
        }
    }
}

fn opcode(buf: &[u8]) -> Option<u16> {
    match buf {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Parse a packet received on the server port.
pub fn parse_request(buf: &[u8]) -> Result<Request, RequestError> {
    let op = opcode(buf).ok_or(RequestError::TooShort)?;
    match op {
        OP_RRQ => parse_rrq(&buf[2..]).map(Request::Read),
        OP_WRQ => Ok(Request::Write),
        OP_DATA | OP_ACK | OP_ERROR | OP_OACK => Ok(Request::Stray),
        other => Err(RequestError::UnknownOpcode(other)),
    }
}

fn parse_rrq(body: &[u8]) -> Result<ReadRequest, RequestError> {
    // Fields are NUL-terminated; whatever follows the last NUL is ignored.
    let mut fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
    fields.pop(); // the unterminated tail (empty for a well-formed packet)
    if fields.len() < 2 {
        return Err(RequestError::Malformed);
    }
    let filename = fields[0];
    if filename.is_empty() {
        return Err(RequestError::Malformed);
    }
    let mode_str = String::from_utf8_lossy(fields[1]).to_ascii_lowercase();
    let mode = match mode_str.as_str() {
        "octet" => Mode::Octet,
        "netascii" => Mode::Netascii,
        _ => return Err(RequestError::UnsupportedMode(mode_str)),
    };
    let mut options: Vec<(String, String)> = Vec::new();
    // Complete name/value pairs only; a name without a value is ignored.
    for pair in fields[2..].chunks_exact(2) {
        let name = String::from_utf8_lossy(pair[0]).to_ascii_lowercase();
        if name.is_empty() || options.iter().any(|(n, _)| *n == name) {
            continue;
        }
        options.push((name, String::from_utf8_lossy(pair[1]).into_owned()));
    }
    Ok(ReadRequest {
        filename: filename.to_vec(),
        mode,
        options,
    })
}

/// A packet a client sends on a transfer's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ack(u16),
    Error {
        code: u16,
        message: String,
    },
    /// Anything else (ignored).
    Other,
}

pub fn parse_reply(buf: &[u8]) -> Reply {
    match (opcode(buf), buf.get(2..4)) {
        (Some(OP_ACK), Some([a, b])) => Reply::Ack(u16::from_be_bytes([*a, *b])),
        (Some(OP_ERROR), Some([a, b])) => {
            let text = &buf[4..];
            let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
            Reply::Error {
                code: u16::from_be_bytes([*a, *b]),
                message: String::from_utf8_lossy(&text[..end]).into_owned(),
            }
        }
        _ => Reply::Other,
    }
}

/// An ERROR packet.
pub fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + message.len());
    p.extend_from_slice(&OP_ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend(message.bytes().filter(|b| *b != 0));
    p.push(0);
    p
}

/// An OACK packet with these options.
pub fn oack_packet(options: &[(String, String)]) -> Vec<u8> {
    let mut p = OP_OACK.to_be_bytes().to_vec();
    for (name, value) in options {
        p.extend_from_slice(name.as_bytes());
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        p.push(0);
    }
    p
}

/// The header of a DATA packet for `block`.
pub fn data_header(block: u16) -> [u8; 4] {
    let op = OP_DATA.to_be_bytes();
    let b = block.to_be_bytes();
    [op[0], op[1], b[0], b[1]]
}

/// The block number carried on the wire for sequence number `seq` (1 is the first block):
/// after 65535 the number rolls over to 0, as tftp-hpa, iPXE and most clients expect.
pub fn wire_block(seq: u64) -> u16 {
    (seq & 0xffff) as u16
}

/// The outcome of option negotiation for one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: usize,
    /// Retransmission timeout the client asked for (seconds, RFC 2349).
    pub timeout: Option<Duration>,
    /// Options accepted, to send in an OACK; empty means no OACK (data starts at once).
    pub oack: Vec<(String, String)>,
}

/// Accept what we support of the client's options. Unknown options and invalid values are
/// left out of the answer (RFC 2347: the client then uses the default); a block size above
/// 65464 or a window above our limit is answered with our lower value. `tsize` is answered
/// with `size` when it is known.
pub fn negotiate(options: &[(String, String)], size: Option<u64>) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: None,
        oack: Vec::new(),
    };
    let num = |v: &str| v.trim().parse::<u64>().ok();
    // blksize first: the window limit depends on it.
    for (name, value) in options {
        if name == "blksize" {
            if let Some(v) = num(value).filter(|v| *v >= MIN_BLKSIZE) {
                let v = v.min(MAX_BLKSIZE);
                n.blksize = v as usize;
                n.oack.push((name.clone(), v.to_string()));
            }
        }
    }
    for (name, value) in options {
        match name.as_str() {
            "tsize" => {
                if let Some(size) = size {
                    n.oack.push((name.clone(), size.to_string()));
                }
            }
            "timeout" => {
                if let Some(v) = num(value).filter(|v| (1..=255).contains(v)) {
                    n.timeout = Some(Duration::from_secs(v));
                    n.oack.push((name.clone(), v.to_string()));
                }
            }
            "windowsize" => {
                if let Some(v) = num(value).filter(|v| (1..=65535).contains(v)) {
                    let limit = (MAX_WINDOW_BYTES / n.blksize as u64).clamp(1, MAX_WINDOWSIZE);
                    let v = v.min(limit);
                    n.windowsize = v as usize;
                    n.oack.push((name.clone(), v.to_string()));
                }
            }
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut p = vec![0, 1];
        for s in parts {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p
    }

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_a_plain_read_request() {
        let r = parse_request(&rrq(&["undionly.kpxe", "octet"])).unwrap();
        assert_eq!(
            r,
            Request::Read(ReadRequest {
                filename: b"undionly.kpxe".to_vec(),
                mode: Mode::Octet,
                options: vec![],
            })
        );
    }

    #[test]
    fn parses_options_case_insensitively() {
        let p = rrq(&[
            "a", "NetASCII", "BLKSIZE", "1468", "tsize", "0", "blksize", "9", "odd",
        ]);
        let Request::Read(r) = parse_request(&p).unwrap() else {
            panic!()
        };
        assert_eq!(r.mode, Mode::Netascii);
        assert_eq!(r.options, opts(&[("blksize", "1468"), ("tsize", "0")]));
    }

    #[test]
    fn rejects_malformed_requests_without_panicking() {
        assert_eq!(parse_request(&[]), Err(RequestError::TooShort));
        assert_eq!(parse_request(&[0]), Err(RequestError::TooShort));
        assert_eq!(parse_request(&[0, 1]), Err(RequestError::Malformed));
        assert_eq!(parse_request(b"\0\x01file"), Err(RequestError::Malformed));
        assert_eq!(
            parse_request(b"\0\x01file\0octet"),
            Err(RequestError::Malformed)
        );
        assert_eq!(
            parse_request(b"\0\x01\0octet\0"),
            Err(RequestError::Malformed)
        );
        assert_eq!(
            parse_request(&rrq(&["f", "mail"])),
            Err(RequestError::UnsupportedMode("mail".into()))
        );
        assert_eq!(
            parse_request(&[0, 9, 1, 2]),
            Err(RequestError::UnknownOpcode(9))
        );
        assert_eq!(
            parse_request(&rrq(&["f", "octet"])[..2]),
            Err(RequestError::Malformed)
        );
        assert_eq!(parse_request(&[0, 2, 0xff]), Ok(Request::Write));
        for op in [3u8, 4, 5, 6] {
            assert_eq!(parse_request(&[0, op]), Ok(Request::Stray));
        }
        // Every prefix of a valid request and some noise: no panics.
        let full = rrq(&["dir/file", "octet", "blksize", "1468", "windowsize", "8"]);
        for i in 0..full.len() {
            let _ = parse_request(&full[..i]);
        }
        let mut noise = 0x1234_5678u32;
        for len in 0..300 {
            let mut p = vec![0u8, 1];
            for _ in 0..len {
                noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                p.push((noise >> 24) as u8 & 0x73);
            }
            let _ = parse_request(&p);
            let _ = parse_reply(&p);
        }
    }

    #[test]
    fn parses_replies() {
        assert_eq!(parse_reply(&[0, 4, 1, 2]), Reply::Ack(0x0102));
        assert_eq!(parse_reply(&[0, 4, 1]), Reply::Other);
        assert_eq!(parse_reply(&[0, 4]), Reply::Other);
        assert_eq!(parse_reply(&[]), Reply::Other);
        assert_eq!(
            parse_reply(b"\0\x05\0\x08no thanks\0"),
            Reply::Error {
                code: 8,
                message: "no thanks".into()
            }
        );
        assert_eq!(
            parse_reply(b"\0\x05\0\x00unterminated"),
            Reply::Error {
                code: 0,
                message: "unterminated".into()
            }
        );
        assert_eq!(parse_reply(&[0, 3, 0, 1, 9]), Reply::Other);
    }

    #[test]
    fn encodes_packets() {
        assert_eq!(
            error_packet(1, "File not found"),
            b"\0\x05\0\x01File not found\0"
        );
        assert_eq!(
            oack_packet(&opts(&[("blksize", "1468"), ("tsize", "74213")])),
            b"\0\x06blksize\x001468\0tsize\x0074213\0"
        );
        assert_eq!(data_header(0x1234), [0, 3, 0x12, 0x34]);
    }

    #[test]
    fn block_numbers_roll_over_to_zero() {
        assert_eq!(wire_block(1), 1);
        assert_eq!(wire_block(65535), 65535);
        assert_eq!(wire_block(65536), 0);
        assert_eq!(wire_block(65537), 1);
    }

    #[test]
    fn negotiates_supported_options() {
        let n = negotiate(&[], Some(10));
        assert_eq!((n.blksize, n.windowsize, n.timeout), (512, 1, None));
        assert!(n.oack.is_empty());

        let n = negotiate(
            &opts(&[
                ("tsize", "0"),
                ("blksize", "1468"),
                ("timeout", "3"),
                ("windowsize", "8"),
                ("multicast", ""),
            ]),
            Some(74213),
        );
        assert_eq!(n.blksize, 1468);
        assert_eq!(n.windowsize, 8);
        assert_eq!(n.timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            n.oack,
            opts(&[
                ("blksize", "1468"),
                ("tsize", "74213"),
                ("timeout", "3"),
                ("windowsize", "8")
            ])
        );
    }

    #[test]
    fn clamps_or_drops_bad_option_values() {
        let n = negotiate(&opts(&[("blksize", "100000")]), None);
        assert_eq!(n.blksize, 65464);
        assert_eq!(n.oack, opts(&[("blksize", "65464")]));
        for bad in ["7", "0", "-1", "x", ""] {
            let n = negotiate(&opts(&[("blksize", bad)]), None);
            assert_eq!(n.blksize, 512, "{bad}");
            assert!(n.oack.is_empty(), "{bad}");
        }
        assert_eq!(negotiate(&opts(&[("blksize", "8")]), None).blksize, 8);
        for bad in ["0", "256", "x"] {
            let n = negotiate(&opts(&[("timeout", bad)]), None);
            assert!(n.timeout.is_none() && n.oack.is_empty(), "{bad}");
        }
        for bad in ["0", "65536", "x"] {
            let n = negotiate(&opts(&[("windowsize", bad)]), None);
            assert!(n.windowsize == 1 && n.oack.is_empty(), "{bad}");
        }
        // Windows are capped, more tightly for big blocks.
        let n = negotiate(&opts(&[("windowsize", "65535")]), None);
        assert_eq!(n.windowsize, 64);
        let n = negotiate(
            &opts(&[("windowsize", "65535"), ("blksize", "65464")]),
            None,
        );
        assert_eq!(n.windowsize, 8);
        assert_eq!(n.oack[1], ("windowsize".to_string(), "8".to_string()));
        // tsize without a known size is left out.
        assert!(negotiate(&opts(&[("tsize", "0")]), None).oack.is_empty());
    }
}

//! TFTP: a datagram on the server port (`parse_request`) or on a transfer's port
//! (`parse_reply`); for a read request, the file name's mapping under the root (`clean`) and
//! the option negotiation with the OACK it answers.

use std::os::unix::ffi::OsStrExt;
use std::path::Component;

use wulfd::tftp::packet::{
    self, Mode, ReadRequest, Reply, Request, MAX_BLKSIZE, MAX_WINDOWSIZE, MAX_WINDOW_BYTES,
    MIN_BLKSIZE,
};
use wulfd::tftp::path;

/// A read request as a client writes it.
fn encode(r: &ReadRequest) -> Vec<u8> {
    let mut p = packet::OP_RRQ.to_be_bytes().to_vec();
    p.extend_from_slice(&r.filename);
    p.push(0);
    p.extend_from_slice(match r.mode {
        Mode::Octet => b"octet",
        Mode::Netascii => b"netascii",
    });
    p.push(0);
    for (n, v) in &r.options {
        p.extend_from_slice(n.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

pub fn tftp(data: &[u8]) {
    match packet::parse_reply(data) {
        Reply::Ack(b) => assert!(data[..2] == [0, 4] && data[2..4] == b.to_be_bytes()),
        Reply::Error { code, message } => {
            assert!(data[..2] == [0, 5] && data[2..4] == code.to_be_bytes());
            // An error packet made from any text stays one NUL-terminated string.
            let e = packet::error_packet(code, &message);
            assert_eq!(e[4..].iter().position(|b| *b == 0), Some(e.len() - 5));
        }
        Reply::Other => {}
    }
    let Ok(Request::Read(r)) = packet::parse_request(data) else {
        return;
    };
    assert!(!r.filename.is_empty() && !r.filename.contains(&0));
    // What was understood is what a client meaning it would send.
    assert_eq!(
        packet::parse_request(&encode(&r)),
        Ok(Request::Read(r.clone())),
        "a read request does not survive a round trip"
    );
    match path::clean(&r.filename) {
        Ok(p) => {
            assert!(
                p.components().all(|c| matches!(c, Component::Normal(_))),
                "{p:?} may leave the root"
            );
            assert!(p.components().next().is_some());
            let again = path::clean(p.as_os_str().as_bytes()).ok();
            assert_eq!(again.as_ref(), Some(&p), "cleaning is not idempotent");
        }
        Err(path::Refusal::Denied(_)) => {}
        Err(e) => panic!("clean refused {:?} with {e}", r.filename),
    }
    for size in [None, Some(0), Some(74_213), Some(u64::MAX)] {
        let n = packet::negotiate(&r.options, size);
        assert!((MIN_BLKSIZE..=MAX_BLKSIZE).contains(&(n.blksize as u64)));
        assert!(n.windowsize >= 1 && n.windowsize as u64 <= MAX_WINDOWSIZE);
        assert!(
            n.windowsize == 1 || (n.windowsize * n.blksize) as u64 <= MAX_WINDOW_BYTES,
            "a window of {} blocks of {} bytes",
            n.windowsize,
            n.blksize
        );
        if let Some(t) = n.timeout {
            assert!((1..=255).contains(&t.as_secs()));
        }
        // Only options the client asked for are acknowledged, each once, with our values.
        for (i, (k, v)) in n.oack.iter().enumerate() {
            assert!(r.options.iter().any(|(o, _)| o == k), "OACK of unasked {k}");
            assert!(
                !n.oack[..i].iter().any(|(o, _)| o == k),
                "{k} acknowledged twice"
            );
            let ours = match k.as_str() {
                "blksize" => Some(n.blksize as u64),
                "windowsize" => Some(n.windowsize as u64),
                "tsize" => size,
                "timeout" => n.timeout.map(|t| t.as_secs()),
                other => panic!("OACK of unsupported option {other}"),
            };
            assert_eq!(v.parse::<u64>().ok(), ours, "OACK {k}={v}");
        }
        // The OACK is the acknowledged pairs, NUL-terminated, after opcode 6.
        let oack = packet::oack_packet(&n.oack);
        assert_eq!(&oack[..2], &packet::OP_OACK.to_be_bytes());
        let mut fields: Vec<&[u8]> = oack[2..].split(|b| *b == 0).collect();
        assert_eq!(fields.pop(), Some(&b""[..]));
        assert_eq!(fields.len(), 2 * n.oack.len());
        for (pair, (k, v)) in fields.chunks(2).zip(&n.oack) {
            assert_eq!((pair[0], pair[1]), (k.as_bytes(), v.as_bytes()));
        }
    }
}

//! The boot-file fast path's request reader: the head as `read_head` frames it (up to the
//! blank line), `parse_head`, and the `Range` header (`parse_range`) against files of several
//! sizes: a satisfiable range always lies inside the file.

use wulfd::sendfile::{parse_head, parse_range};

/// The request head as the reader hands it to the parser: up to the first blank line.
fn frame(data: &[u8]) -> &[u8] {
    match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &data[..end],
        None => data,
    }
}

fn check_range(spec: &str, len: u64) {
    if let Ok(Some((start, end))) = parse_range(spec, len) {
        assert!(
            start <= end && end < len,
            "range {start}-{end} of a {len}-byte file from {spec:?}"
        );
    }
}

pub fn http_head(data: &[u8]) {
    let head = frame(data);
    let _ = parse_head(head);
    let lens = [0, 1, 2, 1000, u64::MAX - 1, u64::MAX];
    let text = String::from_utf8_lossy(head);
    for line in text.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                for len in lens {
                    check_range(value.trim(), len);
                }
            }
        }
    }
    // The whole input as a range header too (the fuzzer finds the syntax faster).
    let spec = String::from_utf8_lossy(data);
    for len in lens {
        check_range(&spec, len);
    }
}

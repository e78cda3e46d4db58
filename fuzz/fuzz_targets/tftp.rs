//! Fuzz a TFTP datagram: see `wulf_fuzz_targets::tftp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::tftp(data));

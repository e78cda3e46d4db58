//! Fuzz a DHCP datagram on port 67: see `wulf_fuzz_targets::dhcp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::dhcp(data));

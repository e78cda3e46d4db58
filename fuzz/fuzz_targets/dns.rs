//! Fuzz a DNS message: see `wulf_fuzz_targets::dns`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::dns(data));

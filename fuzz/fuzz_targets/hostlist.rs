//! Fuzz a hostlist expression: see `wulf_fuzz_targets::hostlist`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::hostlist(data));

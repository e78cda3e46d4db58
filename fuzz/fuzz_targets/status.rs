//! Fuzz a node's status report body: see `wulf_fuzz_targets::status`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::status(data));

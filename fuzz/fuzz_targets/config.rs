//! Fuzz wulfd's TOML config file: see `wulf_fuzz_targets::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::config(data));

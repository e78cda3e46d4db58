//! Fuzz the head of an HTTP request to the boot-file fast path: see `wulf_fuzz_targets::http_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::http_head(data));

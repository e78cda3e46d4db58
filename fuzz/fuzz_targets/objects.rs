//! Fuzz an object body for POST /api/v1/{kind}: see `wulf_fuzz_targets::objects`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::objects(data));

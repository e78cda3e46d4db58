//! Fuzz a PATCH /api/v1/{kind} body: see `wulf_fuzz_targets::update`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wulf_fuzz_targets::update(data));

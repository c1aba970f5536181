//! `cargo +nightly fuzz run signature`: see `portd_fuzz::signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portd_fuzz::signature(data));

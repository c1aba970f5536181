//! `cargo +nightly fuzz run template`: see `portd_fuzz::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portd_fuzz::template(data));

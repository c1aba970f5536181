//! `cargo +nightly fuzz run action`: see `portd_fuzz::action`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portd_fuzz::action(data));

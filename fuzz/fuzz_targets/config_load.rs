//! `cargo fuzz run config_load`: see `airlock_fuzz::config_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz::config_load(data));

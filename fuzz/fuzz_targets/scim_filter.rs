//! `cargo fuzz run scim_filter`: see `airlock_fuzz::scim_filter`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz::scim_filter(data));

//! `cargo fuzz run scim_body`: see `airlock_fuzz::scim_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz::scim_body(data));

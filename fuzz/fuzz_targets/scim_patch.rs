//! `cargo fuzz run scim_patch`: see `airlock_fuzz::scim_patch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz::scim_patch(data));

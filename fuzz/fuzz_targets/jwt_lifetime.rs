#![no_main]
// The property is in tests/fuzz-checks, so the stable replay tests check the same thing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz_checks::jwt_lifetime(data));

//! Fuzzes the configuration loader (a TOML file and `MTML_*` variables) with
//! the check in `mtml_tests::fuzz::config`, which the test suite also runs over the kept corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtml_tests::fuzz::config(data));

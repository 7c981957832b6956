//! Fuzzes the tick file readers (plain, gzip, UTF-16; every layout) with
//! the check in `mtml_tests::fuzz::tick_file`, which the test suite also runs over the kept corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtml_tests::fuzz::tick_file(data));

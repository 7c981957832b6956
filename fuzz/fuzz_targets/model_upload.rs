//! Fuzzes the model-upload validation path (ONNX Runtime's loader, the feature-set check, the metrics) with
//! the check in `mtml_tests::fuzz::model_upload`, which the test suite also runs over the kept corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtml_tests::fuzz::model_upload(data));

//! What the fuzz targets check, one function per target: `fuzz/fuzz_targets/*.rs` hand each
//! function libFuzzer's inputs, and `tests/tests/fuzz.rs` runs them over the corpus kept in
//! `fuzz/corpus/` plus a bounded number of mutations in every test run. Each function panics only
//! when mtml broke a promise: input may be refused, but with a reason that names the problem,
//! never with a panic, a hang or an empty message.

use std::path::PathBuf;
use std::sync::OnceLock;

use mtml_ingestion::{FileTickStamper, TickFileReader, normalize_symbol};

/// Tick file readers: any bytes (plain, gzip, UTF-16, any layout) either open, or are refused
/// naming the file and line; rows come with rising line numbers, and the first bad row names its
/// line and ends reading.
pub fn tick_file(data: &[u8]) {
    let reader = match TickFileReader::from_source(PathBuf::from("fuzzed.csv"), std::io::Cursor::new(data.to_vec())) {
        Ok(reader) => reader,
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains("fuzzed.csv") && text.len() > "fuzzed.csv".len() + 2, "a refusal names the file and why: {text:?}");
            return;
        }
    };
    let mut stamper = FileTickStamper::new("fuzz");
    let mut last_line = 0;
    let mut failed = false;
    for row in reader {
        assert!(!failed, "reading goes on after a bad row");
        match row {
            Ok(row) => {
                assert!(row.line > last_line, "line numbers rise: {} after {last_line}", row.line);
                last_line = row.line;
                let symbol = normalize_symbol(row.symbol.as_deref().unwrap_or("EURUSD"));
                let tick = stamper.stamp(mtml_core::Symbol::new(&symbol), &row);
                assert_eq!(tick.time_msc, row.time_msc);
            }
            Err(error) => {
                let text = error.to_string();
                let line = text.strip_prefix("fuzzed.csv:").and_then(|rest| rest.split_once(": ")).map(|(line, _)| line);
                assert!(line.is_some_and(|l| l.parse::<u64>().is_ok_and(|l| l > last_line)), "a bad row names file and line: {text:?}");
                failed = true;
            }
        }
    }
}

/// The configuration loader: a TOML file and `MTML_*` variables (the input's lines after a
/// `\0`, as `NAME=value`) either load or are refused with one non-empty line per problem; what
/// loads answers the checks a start makes on it.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (file, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (format!("MTML_{}", name.trim_start_matches("MTML_")), value.to_owned()))
        .collect();
    match mtml::config::Config::from_sources(Some(file), env) {
        Ok(config) => {
            let any = "0.0.0.0:1".parse().ok();
            let _ = config.tokens_for(&[("gRPC", any)]);
            let _ = config.check_bridge_exposure(config.bridge.listen);
            let _ = config.telegram_settings();
            let _ = mtml::tls::server_tls(&config.tls);
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "a refusal says why");
            assert!(error.problems.iter().all(|p| !p.trim().is_empty()), "no empty problem: {:?}", error.problems);
        }
    }
}

/// The model-upload validation path: any bytes either register as a model that takes this
/// build's features, or are refused with the loader's or the check's reason naming the upload.
/// An input with a `\0` byte carries its training metrics as text before the first one.
pub fn model_upload(data: &[u8]) {
    let (metrics, model) = match data.iter().position(|b| *b == 0) {
        Some(at) => (String::from_utf8_lossy(&data[..at]).into_owned(), data[at + 1..].to_vec()),
        None => (String::new(), data.to_vec()),
    };
    let upload = mtml_rollout::UploadRequest {
        name: "fuzzed".into(),
        bytes: model,
        metrics_json: metrics,
        uploaded_by: "fuzz".into(),
        label: "upload of fuzzed".into(),
    };
    match mtml_rollout::validate(onnx_runtime(), upload) {
        Ok(version) => {
            assert_eq!(version.features, mtml_feature_store::FEATURE_SET.features.len() as i64);
            assert!(version.metrics.starts_with('{'), "metrics stored as an object: {}", version.metrics);
        }
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains("fuzzed") && text.len() > 20, "a refusal names the upload and why: {text:?}");
        }
    }
}

/// ONNX Runtime, loaded once from where `cargo xtask setup` puts it (or `ORT_DYLIB_PATH`).
fn onnx_runtime() -> &'static mtml_inference::OnnxRuntime {
    static RUNTIME: OnceLock<mtml_inference::OnnxRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
        let library = mtml_inference::locate_library(library.as_deref()).unwrap_or_else(|e| panic!("{e}"));
        mtml_inference::OnnxRuntime::load(&library).unwrap_or_else(|e| panic!("{e}"))
    })
}

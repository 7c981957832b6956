//! What mtml keeps to itself and whom it serves: no telemetry from ONNX Runtime, secrets absent
//! from everything a run writes, and callers without the right refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

fn mtml() -> std::process::Command {
    mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// ONNX Runtime 1.31 writes a device id and queued events under
/// `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` at start unless its variable is set; the
/// binary sets it itself, so a run as a new user (a fresh HOME, nothing in the environment)
/// leaves nothing there.
#[test]
fn a_run_as_a_new_user_writes_no_telemetry() {
    let home = tempfile::tempdir().unwrap();
    let output = mtml()
        .args(["replay", "--ticks"])
        .arg(common::sample())
        .env("HOME", home.path())
        .env_remove("XDG_CACHE_HOME")
        .env_remove(mtml_inference::TELEMETRY_OFF_ENV)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("predictions"), "the model ran");
    let written = files_under(home.path());
    assert!(written.iter().all(|f| !f.contains("Microsoft") && !f.contains("onnxruntime.db")), "telemetry written: {written:?}");
}

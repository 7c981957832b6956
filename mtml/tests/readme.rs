//! The README's examples run as written: every `sh` block (not those marked `sh no-test`, which
//! need a running instance or are the set-up commands themselves), in order, in one empty folder
//! holding only the repository's `data` and `models`, with this build's `mtml` first on PATH.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `sh` blocks of a Markdown text, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to).unwrap();
}

#[test]
fn every_sh_block_of_the_readme_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(!blocks.is_empty(), "the README has runnable examples");
    let dir = tempfile::tempdir().unwrap();
    link(&root.join("data"), &dir.path().join("data"));
    link(&root.join("models"), &dir.path().join("models"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mtml"));
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    // One shell for all blocks, as a reader pasting them into one terminal would.
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("MTML_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the README's commands failed\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    // What the rollout example promises.
    assert!(stdout.contains("registered fx-direction:1") && stdout.contains("registered fx-direction:2"), "{stdout}");
    assert!(stdout.to_lowercase().contains("challenger"), "the replay prints the comparison: {stdout}");
}

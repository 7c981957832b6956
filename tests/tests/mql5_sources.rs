//! The MQL5 expert advisor, checked where no MetaTrader compiler exists: every source parses as
//! C++ once MQL-only syntax is stripped (tree-sitter-cpp), and the messages it sends and handles
//! are exactly the protocol's, in the right direction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn mql5_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mql5")
}

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("mq5" | "mqh")) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&mql5_dir(), &mut out);
    out.sort();
    out
}

/// MQL5 to C++ for parsing: drop `#property` lines and the `input`/`sinput` storage keywords, and
/// spell MQL's integer type names the C way. Line numbers are kept.
fn strip_mql(source: &str) -> String {
    let types = [
        ("uchar", "unsigned char"),
        ("ushort", "unsigned short"),
        ("uint", "unsigned int"),
        ("ulong", "unsigned long"),
        ("datetime", "long"),
        ("color", "int"),
    ];
    source
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("#property") {
                return String::new();
            }
            let mut line = line.to_owned();
            for keyword in ["sinput ", "input "] {
                if trimmed.starts_with(keyword) {
                    line = line.replacen(keyword, "", 1);
                }
            }
            for (mql, c) in types {
                line = replace_word(&line, mql, c);
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn replace_word(line: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let bytes = line.as_bytes();
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < line.len() {
        if line[i..].starts_with(word)
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + word.len()).is_none_or(|&b| !is_ident(b))
        {
            out.push_str(with);
            i += word.len();
        } else {
            let ch = line[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Syntax errors as (line, text) pairs.
fn syntax_errors(source: &str) -> Vec<(usize, String)> {
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&tree_sitter_cpp::LANGUAGE.into()).unwrap();
    let tree = parser.parse(source, None).unwrap();
    let mut errors = Vec::new();
    let mut cursor = tree.walk();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            let line = node.start_position().row + 1;
            let text = source.lines().nth(line - 1).unwrap_or("").trim().to_owned();
            errors.push((line, text));
            continue;
        }
        if node.has_error() {
            stack.extend(node.children(&mut cursor));
        }
    }
    errors.sort();
    errors
}

#[test]
fn every_mql5_source_parses() {
    let files = sources();
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["MtmlBridge.mq5", "Journal.mqh", "Protocol.mqh", "Transport.mqh"]);
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let errors = syntax_errors(&strip_mql(&source));
        assert!(errors.is_empty(), "{}: syntax errors at {errors:?}", file.display());
    }
}

#[test]
fn the_parse_check_catches_a_broken_source() {
    let broken = "void OnTimer(void)\n  {\n   if(x == 1\n      return;\n  }\n";
    let errors = syntax_errors(&strip_mql(broken));
    assert!(!errors.is_empty());
    assert!(errors.iter().any(|(line, _)| *line <= 4), "{errors:?}");
}

#[test]
fn stripping_keeps_line_numbers_and_only_touches_whole_words() {
    let source = "#property strict\ninput uint InpPort = 5; // uint\nstring uintish = \"x\";";
    let stripped = strip_mql(source);
    assert_eq!(stripped.lines().count(), 3);
    assert_eq!(stripped.lines().nth(1).unwrap(), "unsigned int InpPort = 5; // unsigned int");
    assert!(stripped.contains("uintish"));
}

/// Message types the EA writes (`SendMessage("X", ...)`) and reads (`type == "Y"`).
fn ea_message_types() -> (BTreeSet<String>, BTreeSet<String>) {
    let source = std::fs::read_to_string(mql5_dir().join("Experts/mtml/MtmlBridge.mq5")).unwrap();
    let quoted_after = |marker: &str| -> BTreeSet<String> {
        source
            .match_indices(marker)
            .filter_map(|(i, _)| {
                let rest = &source[i + marker.len()..];
                rest.split('"').next().map(str::to_owned)
            })
            .collect()
    };
    (quoted_after("SendMessage(\""), quoted_after("type == \""))
}

#[test]
fn the_ea_sends_and_handles_exactly_the_protocol_messages_of_its_side() {
    let (sent, handled) = ea_message_types();
    let ea_to_bridge: BTreeSet<String> = [
        "HELLO", "SYMBOL", "POSITION", "PENDING", "DEAL", "ACCOUNT", "SNAPSHOT_END", "TICK", "BAR",
        "ACK", "REJECT", "FILL", "HEARTBEAT",
    ]
    .map(String::from)
    .into();
    let bridge_to_ea: BTreeSet<String> = [
        "WELCOME", "REFUSED", "RESUME", "START", "ORDER", "MODIFY", "CLOSE", "CANCEL", "RESEND",
        "SYNC", "HEARTBEAT",
    ]
    .map(String::from)
    .into();
    assert_eq!(sent, ea_to_bridge);
    assert_eq!(handled, bridge_to_ea);
    // Every one of them has a golden frame in the specification.
    let spec = std::fs::read_to_string(mql5_dir().join("../docs/protocol.md")).unwrap();
    for name in sent.union(&handled) {
        assert!(spec.contains(&format!("```golden {name}\n")), "{name} has no golden frame");
    }
}

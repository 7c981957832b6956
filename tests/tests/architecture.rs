//! The architecture invariants of ARCHITECTURE.md, checked on the source tree: no import cycle
//! between the modules of any crate, the dependency rules between crates, `anyhow` only at the
//! top, and a composition crate that stays a small part of the workspace.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The workspace's member folders, from the root manifest.
fn members() -> Vec<String> {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    manifest["workspace"]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/app.rs` and `src/services/admin.rs`
/// belong to `app` and `services`; `lib.rs` and `main.rs` to the crate root).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Edges `module -> module` from `crate::X` paths, between top-level modules of one crate.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let Some(from) = top_module(src, file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        // Test modules may reach anywhere in their crate; production code may not form cycles.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let preceded_by_ident = text[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !preceded_by_ident && name != from && modules.contains(&name) {
                graph.get_mut(&from).unwrap().insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in &graph[node] {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
            g.entry((*b).into()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut checked = 0;
    for member in members() {
        let src = root().join(&member).join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = module_graph(&src);
        assert!(find_cycle(&graph).is_none(), "{member}: modules import each other in a circle: {:?}", find_cycle(&graph));
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} crates checked");
}

/// The `mtml-*` crates a member depends on (not dev-dependencies), and whether it uses anyhow.
fn dependencies(member: &str) -> (BTreeSet<String>, bool) {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(root().join(member).join("Cargo.toml")).unwrap()).unwrap();
    let deps = manifest.get("dependencies").and_then(toml::Value::as_table).cloned().unwrap_or_default();
    let internal = deps.keys().filter(|k| k.starts_with("mtml")).cloned().collect();
    (internal, deps.contains_key("anyhow"))
}

#[test]
fn crates_depend_only_downwards() {
    let deps = |member: &str| dependencies(member).0;
    // Decision, risk and execution know only the shared vocabulary: no I/O, no wire format.
    assert_eq!(deps("decision"), BTreeSet::from(["mtml-core".to_owned()]));
    // The tick path does not name the bridge nor the gRPC contracts: orders leave through a trait.
    let pipeline = deps("pipeline");
    for forbidden in ["mtml-bridge", "mtml-proto", "mtml", "mtml-registry"] {
        assert!(!pipeline.contains(forbidden), "pipeline depends on {forbidden}");
    }
    // Metrics know names and the format, and admit callers through the one guard; telemetry
    // knows chains and OTLP: neither names a stage.
    assert_eq!(deps("metrics"), BTreeSet::from(["mtml-auth".to_owned()]));
    // Access control stands alone: every server and client can use it, and it names none of them.
    assert_eq!(deps("auth"), BTreeSet::new());
    assert_eq!(deps("telemetry"), BTreeSet::from(["mtml-core".to_owned()]));
    // The bot knows notices and Telegram, and reaches a running mtml only through Operations.
    assert_eq!(deps("telegram"), BTreeSet::from(["mtml-core".to_owned()]));
    // Rollout does not name the pipeline it feeds (the pipeline implements its trait).
    assert!(!deps("rollout").contains("mtml-pipeline"));
    // Only the bridge (and the simulator that speaks to it) know the EA wire format.
    for member in members() {
        let d = deps(&member);
        if !["bridge", "simulator", "mtml", "tests"].contains(&member.as_str()) {
            assert!(!d.contains("mtml-bridge"), "{member} depends on the bridge");
        }
        // Nothing below the composition crate depends on it.
        if !["mtml", "tests", "xtask"].contains(&member.as_str()) {
            assert!(!d.contains("mtml"), "{member} depends on the composition crate");
        }
    }
}

#[test]
fn anyhow_only_in_the_composition_crate_tests_and_xtask() {
    for member in members() {
        let (_, anyhow) = dependencies(&member);
        if anyhow {
            assert!(["mtml", "tests", "xtask"].contains(&member.as_str()), "{member} depends on anyhow; libraries return typed errors");
        }
    }
}

fn lines(dir: &Path) -> usize {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.iter().map(|f| std::fs::read_to_string(f).unwrap().lines().count()).sum()
}

#[test]
fn the_composition_crate_is_a_small_part_of_the_workspace() {
    let libraries = ["core", "proto", "bridge", "simulator", "ingestion", "feature-store", "inference", "rollout", "decision", "pipeline", "journal", "registry", "database", "metrics", "telemetry", "telegram", "auth"];
    let library_lines: usize = libraries.iter().map(|l| lines(&root().join(l).join("src"))).sum();
    let composition = lines(&root().join("mtml/src"));
    let share = composition as f64 / (composition + library_lines) as f64;
    assert!(share < 0.25, "mtml/src is {composition} lines, {:.0}% of the workspace's sources", share * 100.0);
}

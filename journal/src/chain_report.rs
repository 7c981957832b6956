//! The chain history as a person on call reads it: one chain as a waterfall, a list of chains,
//! and the chain-health summary. Shared by `mtml chain` and the `mtml.v1.Chains` service.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{ChainRow, SpanRow};

/// Width of a waterfall bar, characters.
const BAR: usize = 40;

/// One chain as a waterfall: a line per span (in start order, whichever process recorded it)
/// with its offset from the chain's first span, duration, the process, a bar placed on the
/// chain's time line, and how it ended when not `ok`.
pub fn waterfall(chain_id: &str, spans: &[SpanRow]) -> String {
    let mut out = String::new();
    let first = spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
    let offset = |span: &SpanRow| span.start_unix_ns - first;
    let total = spans.iter().map(|s| offset(s) + s.duration_ns).max().unwrap_or(0).max(1);
    let services: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    let processes = match services.len() {
        1 => String::new(),
        n => format!(" in {n} processes"),
    };
    let _ = writeln!(out, "chain {chain_id}: {} spans over {:.2} µs{processes}", spans.len(), total as f64 / 1e3);
    let _ = writeln!(out, "  {:<16} {:<10} {:>12} {:>12}  timeline", "stage", "process", "offset µs", "duration µs");
    for span in spans {
        let start = (offset(span) as f64 / total as f64 * BAR as f64).floor() as usize;
        let width = ((span.duration_ns as f64 / total as f64 * BAR as f64).round() as usize).max(1).min(BAR - start.min(BAR - 1));
        let bar = format!("{}{}", " ".repeat(start.min(BAR - 1)), "█".repeat(width));
        let outcome = if span.outcome == "ok" { String::new() } else { format!("  {}", span.outcome) };
        let _ = writeln!(
            out,
            "  {:<16} {:<10} {:>12.2} {:>12.2}  |{bar:<BAR$}|{outcome}",
            span.stage,
            span.service,
            offset(span) as f64 / 1e3,
            span.duration_ns as f64 / 1e3
        );
    }
    out
}

/// Chains, a line each.
pub fn chain_list(rows: &[ChainRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<32}  {:>12}  {:>5}  recorded", "chain", "total µs", "spans");
    for row in rows {
        let _ = writeln!(
            out,
            "{:<32}  {:>12.2}  {:>5}  {}",
            row.chain_id,
            row.total_ns as f64 / 1e3,
            row.spans,
            mtml_core::text::utc(row.recorded_ms)
        );
    }
    let _ = writeln!(out, "{} chains", rows.len());
    out
}

fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Per-stage latency (p50, p99, max) and refusal and error rates over `spans`, the bottleneck
/// (the stage that takes the most time in the slowest 1% of chains), and where chains that
/// went wrong went wrong.
pub fn health(spans: &[(String, SpanRow)]) -> String {
    let mut by_stage: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut by_chain: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut went_wrong: BTreeMap<String, u64> = BTreeMap::new();
    // Where a chain first went wrong, and the later stages that still saw it.
    let mut propagated: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let mut first_wrong: BTreeMap<&str, String> = BTreeMap::new();
    for (chain, span) in spans {
        if let Some(place) = first_wrong.get(chain.as_str()) {
            *propagated.entry((place.clone(), span.stage.as_str())).or_default() += 1;
        } else if span.outcome != "ok" {
            first_wrong.insert(chain, span.stage.clone());
        }
        by_stage.entry(&span.stage).or_default().push(span.duration_ns);
        by_chain.entry(chain).or_default().push((&span.stage, span.duration_ns));
        let (rejected, errors) = outcomes.entry(&span.stage).or_default();
        if span.outcome.starts_with("rejected") {
            *rejected += 1;
        } else if span.outcome.starts_with("error") {
            *errors += 1;
        }
        if span.outcome != "ok" {
            *went_wrong.entry(format!("{}: {}", span.stage, span.outcome)).or_default() += 1;
        }
    }
    let mut out = String::new();
    if spans.is_empty() {
        let _ = writeln!(out, "no chains in the history for this period");
        return out;
    }
    let _ = writeln!(out, "{} chains, {} spans", by_chain.len(), spans.len());
    let _ = writeln!(out, "  {:<16} {:>8} {:>12} {:>12} {:>12} {:>9} {:>7}", "stage", "count", "p50 µs", "p99 µs", "max µs", "refused", "errors");
    // In the order of the path, not of the alphabet.
    let position = |stage: &str| mtml_core::Stage::ALL.iter().position(|s| s.name() == stage).unwrap_or(usize::MAX);
    let mut stages: Vec<(&str, Vec<i64>)> = std::mem::take(&mut by_stage).into_iter().collect();
    stages.sort_by_key(|(stage, _)| position(stage));
    for (stage, durations) in &mut stages {
        durations.sort_unstable();
        let us = |ns: i64| ns as f64 / 1e3;
        let (rejected, errors) = outcomes.get(stage).copied().unwrap_or_default();
        let rate = |n: u64| format!("{:.1}%", n as f64 / durations.len() as f64 * 100.0);
        let _ = writeln!(
            out,
            "  {stage:<16} {:>8} {:>12.2} {:>12.2} {:>12.2} {:>9} {:>7}",
            durations.len(),
            us(quantile(durations, 0.5)),
            us(quantile(durations, 0.99)),
            us(*durations.last().unwrap_or(&0)),
            rate(rejected),
            rate(errors)
        );
    }
    // Where a stage refused or failed chains, and which later stages still saw them.
    for (place, chains) in &went_wrong {
        let _ = writeln!(out, "went wrong: {chains} chain(s) at {place}");
    }
    for ((from, to), chains) in &propagated {
        let _ = writeln!(out, "propagated: {chains} chain(s) that went wrong at {from} reached {to}");
    }
    // The slowest 1% of chains (at least one), by the sum of their spans.
    let mut chains: Vec<(&str, i64)> = by_chain.iter().map(|(id, s)| (*id, s.iter().map(|(_, d)| d).sum())).collect();
    chains.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let slowest = chains.len().div_ceil(100).max(1);
    let mut share: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, _) in &chains[..slowest] {
        for (stage, duration) in &by_chain[id] {
            *share.entry(stage).or_default() += duration;
        }
    }
    let total: i64 = share.values().sum();
    if let Some((stage, time)) = share.iter().max_by_key(|(stage, time)| (**time, std::cmp::Reverse(**stage))) {
        let _ = writeln!(
            out,
            "bottleneck: {stage} takes {:.0}% of the time of the slowest {slowest} chain(s)",
            *time as f64 / total.max(1) as f64 * 100.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waterfall_places_each_span_on_the_chains_time_line() {
        let span = |stage: &str, service: &str, offset_ns: i64, duration_ns, outcome: &str| SpanRow {
            stage: stage.into(),
            service: service.into(),
            start_unix_ns: 1_700_000_000_000_000_000 + offset_ns,
            duration_ns,
            outcome: outcome.into(),
        };
        let spans = [
            span("ingest", "pipeline", 0, 1_000, "ok"),
            span("inference", "pipeline", 1_000, 2_000, "ok"),
            span("risk", "bridge", 3_000, 1_000, "rejected: max_drawdown"),
        ];
        let text = waterfall("abc", &spans);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "chain abc: 3 spans over 4.00 µs in 2 processes");
        assert!(lines[4].starts_with("  risk             bridge"), "{text}");
        assert!(lines[2].starts_with("  ingest") && lines[2].contains("|██████████ "), "{text}");
        assert!(lines[3].contains(&format!("|{}{}", " ".repeat(10), "█".repeat(20))), "{text}");
        assert!(lines[4].ends_with(&format!("{}|  rejected: max_drawdown", "█".repeat(10))), "{text}");
    }

    #[test]
    fn health_gives_percentiles_and_names_the_bottleneck() {
        let span = |stage: &str, duration_ns, outcome: &str| SpanRow {
            stage: stage.into(),
            service: "mtml".into(),
            start_unix_ns: 0,
            duration_ns,
            outcome: outcome.into(),
        };
        let mut spans = Vec::new();
        for i in 0..200 {
            spans.push((format!("c{i:03}"), span("ingest", 1_000, "ok")));
            spans.push((format!("c{i:03}"), span("inference", if (7..10).contains(&i) { 900_000 } else { 5_000 }, "ok")));
        }
        spans.push(("c999".to_owned(), span("ingest", 1_000, "rejected: wide_spread")));
        // A broker's rejection seen at the fill, after the bridge sent the order on.
        spans.push(("c998".to_owned(), span("execution", 1_000, "error: broker_rejected")));
        spans.push(("c998".to_owned(), span("bridge_send", 1_000, "ok")));
        let text = health(&spans);
        assert!(text.starts_with("202 chains, 403 spans\n"), "{text}");
        assert!(text.contains("propagated: 1 chain(s) that went wrong at execution reached bridge_send"), "{text}");
        assert!(text.contains("  inference             200         5.00       900.00       900.00      0.0%    0.0%"), "{text}");
        assert!(text.contains("  ingest                201         1.00         1.00         1.00      0.5%    0.0%"), "{text}");
        assert!(text.contains("went wrong: 1 chain(s) at ingest: rejected: wide_spread"), "{text}");
        assert!(text.contains("bottleneck: inference takes 100% of the time of the slowest 3 chain(s)"), "{text}");
        assert_eq!(health(&[]), "no chains in the history for this period\n");
    }
}

//! `mtml chain show | recent | health`: the chain history in the journal's database, read as a
//! person on call reads it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mtml_journal::{ChainRow, Journal};

/// Width of a waterfall bar, characters.
const BAR: usize = 40;

/// `1h`, `30m`, `2d`, `45s` as milliseconds.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().map_err(|_| anyhow::anyhow!("--since {text:?}: give a number and a unit, like 30m, 1h or 2d"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("--since {text:?}: the unit is s, m, h or d (30m, 1h, 2d)"),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// One chain as a waterfall: a line per span with its offset, duration and a bar placed on the
/// chain's time line.
pub fn waterfall(chain_id: &str, spans: &[(String, i64, i64)]) -> String {
    let mut out = String::new();
    let total = spans.iter().map(|(_, offset, duration)| offset + duration).max().unwrap_or(0).max(1);
    let _ = writeln!(out, "chain {chain_id}: {} spans over {:.2} µs", spans.len(), total as f64 / 1e3);
    let _ = writeln!(out, "  {:<16} {:>12} {:>12}  timeline", "stage", "offset µs", "duration µs");
    for (stage, offset, duration) in spans {
        let start = (*offset as f64 / total as f64 * BAR as f64).floor() as usize;
        let width = ((*duration as f64 / total as f64 * BAR as f64).round() as usize).max(1).min(BAR - start.min(BAR - 1));
        let bar = format!("{}{}", " ".repeat(start.min(BAR - 1)), "█".repeat(width));
        let _ = writeln!(out, "  {stage:<16} {:>12.2} {:>12.2}  |{bar:<BAR$}|", *offset as f64 / 1e3, *duration as f64 / 1e3);
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

/// Per-stage latency (p50, p99, max) over `spans` (chain id, stage, duration ns), and the
/// bottleneck: the stage that takes the most time in the slowest 1% of chains.
pub fn health(spans: &[(String, String, i64)]) -> String {
    let mut by_stage: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut by_chain: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for (chain, stage, duration) in spans {
        by_stage.entry(stage).or_default().push(*duration);
        by_chain.entry(chain).or_default().push((stage, *duration));
    }
    let mut out = String::new();
    if spans.is_empty() {
        let _ = writeln!(out, "no chains in the history for this period");
        return out;
    }
    let _ = writeln!(out, "{} chains, {} spans", by_chain.len(), spans.len());
    let _ = writeln!(out, "  {:<16} {:>8} {:>12} {:>12} {:>12}", "stage", "count", "p50 µs", "p99 µs", "max µs");
    // In the order of the path, not of the alphabet.
    let position = |stage: &str| mtml_core::Stage::ALL.iter().position(|s| s.name() == stage).unwrap_or(usize::MAX);
    let mut stages: Vec<(&str, Vec<i64>)> = std::mem::take(&mut by_stage).into_iter().collect();
    stages.sort_by_key(|(stage, _)| position(stage));
    for (stage, durations) in &mut stages {
        durations.sort_unstable();
        let us = |ns: i64| ns as f64 / 1e3;
        let _ = writeln!(
            out,
            "  {stage:<16} {:>8} {:>12.2} {:>12.2} {:>12.2}",
            durations.len(),
            us(quantile(durations, 0.5)),
            us(quantile(durations, 0.99)),
            us(*durations.last().unwrap_or(&0))
        );
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

/// `mtml chain show`.
pub async fn show(journal: &Journal, chain_id: &str) -> anyhow::Result<String> {
    let spans = journal.chain(chain_id).await?;
    if spans.is_empty() {
        anyhow::bail!("chain {chain_id} is not in the history (it holds the chains that led to an order)");
    }
    Ok(waterfall(chain_id, &spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waterfall_places_each_span_on_the_chains_time_line() {
        let spans = [("ingest".to_owned(), 0, 1_000), ("inference".to_owned(), 1_000, 2_000), ("fill".to_owned(), 3_000, 1_000)];
        let text = waterfall("abc", &spans);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "chain abc: 3 spans over 4.00 µs");
        assert!(lines[2].starts_with("  ingest") && lines[2].contains("|██████████ "), "{text}");
        assert!(lines[3].contains(&format!("|{}{}", " ".repeat(10), "█".repeat(20))), "{text}");
        assert!(lines[4].ends_with(&format!("{}|", "█".repeat(10))), "{text}");
    }

    #[test]
    fn health_gives_percentiles_and_names_the_bottleneck() {
        let mut spans = Vec::new();
        for i in 0..200 {
            spans.push((format!("c{i:03}"), "ingest".to_owned(), 1_000));
            spans.push((format!("c{i:03}"), "inference".to_owned(), if (7..10).contains(&i) { 900_000 } else { 5_000 }));
        }
        let text = health(&spans);
        assert!(text.starts_with("200 chains, 400 spans\n"), "{text}");
        assert!(text.contains("  inference             200         5.00       900.00       900.00"), "{text}");
        assert!(text.contains("bottleneck: inference takes 100% of the time of the slowest 2 chain(s)") || text.contains("bottleneck: inference takes 99%"), "{text}");
        assert_eq!(health(&[]), "no chains in the history for this period\n");
    }

    #[test]
    fn since_reads_a_number_and_a_unit() {
        assert_eq!(parse_since("1h").unwrap(), 3_600_000);
        assert_eq!(parse_since("30m").unwrap(), 1_800_000);
        assert!(parse_since("soon").unwrap_err().to_string().contains("like 30m, 1h or 2d"));
        assert!(parse_since("3w").unwrap_err().to_string().contains("the unit is s, m, h or d"));
    }
}

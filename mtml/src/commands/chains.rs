//! `mtml chain show | recent | health`: the chain history in the journal's database, read as a
//! person on call reads it.

use mtml_journal::Journal;

use mtml_journal::chain_report::waterfall;

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
    fn since_reads_a_number_and_a_unit() {
        assert_eq!(parse_since("1h").unwrap(), 3_600_000);
        assert_eq!(parse_since("30m").unwrap(), 1_800_000);
        assert!(parse_since("soon").unwrap_err().to_string().contains("like 30m, 1h or 2d"));
        assert!(parse_since("3w").unwrap_err().to_string().contains("the unit is s, m, h or d"));
    }
}

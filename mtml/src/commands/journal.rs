//! `mtml positions`, `mtml orders` and `mtml pnl`: the journal as tables for a terminal.

use std::fmt::Write as _;

use mtml_journal::Journal;

/// The positions table.
pub async fn positions(journal: &Journal) -> anyhow::Result<String> {
    let rows = journal.positions().await?;
    let mut out = String::from("symbol        lots   avg price   realized pnl\n");
    for row in &rows {
        let _ = writeln!(out, "{:<10} {:>7.2} {:>11.5} {:>14.2}", row.symbol, row.lots, row.average_price, row.realized_pnl);
    }
    if rows.is_empty() {
        out.push_str("(no positions)\n");
    }
    Ok(out)
}

/// The audit log from `since_ms`, oldest first, one line per entry.
pub async fn audit(journal: &Journal, since_ms: i64) -> anyhow::Result<String> {
    let rows = journal.audit_since(since_ms).await?;
    let mut out = String::from("time                        actor            outcome                   action   chain id\n");
    for row in &rows {
        let chain = if row.chain_id.is_empty() { "-" } else { row.chain_id.as_str() };
        let _ = writeln!(out, "{:<27} {:<16} {:<25} {}   {chain}", mtml_core::text::utc(row.at_ms), row.actor, row.outcome, row.action);
    }
    let _ = writeln!(out, "{} entries", rows.len());
    Ok(out)
}

/// The orders table.
pub async fn orders(journal: &Journal, open_only: bool) -> anyhow::Result<String> {
    let rows = journal.orders(open_only).await?;
    let mut out = String::from("client order id   symbol   side   volume   filled   state              chain id\n");
    for row in &rows {
        let _ = writeln!(
            out,
            "{:<17} {:<8} {:<5} {:>7.2} {:>8.2}   {:<18} {}",
            row.client_order_id,
            row.symbol,
            row.side,
            row.volume,
            row.filled,
            row.state,
            if row.chain_id.is_empty() { "(recovered from the terminal's deals)" } else { &row.chain_id }
        );
    }
    let _ = writeln!(out, "{} orders", rows.len());
    Ok(out)
}

/// Realised PnL, all of it or since `since_ms`.
pub async fn pnl(journal: &Journal, since_ms: Option<i64>) -> anyhow::Result<String> {
    let pnl = journal.realized_pnl(since_ms).await?;
    Ok(match since_ms {
        Some(_) => format!("realized pnl today (UTC): {pnl:.2}\n"),
        None => format!("realized pnl: {pnl:.2}\n"),
    })
}

/// Start of the current UTC day, epoch milliseconds.
pub fn start_of_utc_day() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
    ms - ms.rem_euclid(86_400_000)
}

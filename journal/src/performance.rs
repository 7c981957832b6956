//! The business figures of a run of fills: realised PnL, trades, hit rate, the equity curve,
//! its largest drawdown and the Sharpe ratio of hourly PnL (what the daily summary, `/pnl`
//! and `/chart` show).

use mtml_core::Summary;

const HOUR_MS: i64 = 3_600_000;
/// Hours with PnL needed before a Sharpe ratio means anything.
const MIN_HOURS_FOR_SHARPE: usize = 10;
/// Trading hours in a year (24 hours, 252 days), to annualise the hourly Sharpe ratio.
const HOURS_PER_YEAR: f64 = 24.0 * 252.0;

/// The summary of `fills` (market time, realised PnL), in time order.
pub fn summary(title: String, fills: &[(i64, f64)]) -> Summary {
    let mut equity = Vec::with_capacity(fills.len() + 1);
    let (mut total, mut high, mut max_drawdown) = (0.0_f64, 0.0_f64, 0.0_f64);
    if let Some((first, _)) = fills.first() {
        equity.push((*first, 0.0));
    }
    for (time_ms, pnl) in fills {
        total += pnl;
        high = high.max(total);
        max_drawdown = max_drawdown.max(high - total);
        equity.push((*time_ms, total));
    }
    let closing: Vec<f64> = fills.iter().map(|(_, pnl)| *pnl).filter(|pnl| *pnl != 0.0).collect();
    let hit_rate = (!closing.is_empty()).then(|| closing.iter().filter(|pnl| **pnl > 0.0).count() as f64 / closing.len() as f64);
    Summary { title, pnl: total, trades: fills.len() as u64, hit_rate, max_drawdown, sharpe: sharpe(fills), equity }
}

/// Annualised Sharpe ratio of PnL per hour, from the first fill's hour to the last's (hours
/// without fills count as zero); `None` over too few hours or without variation.
fn sharpe(fills: &[(i64, f64)]) -> Option<f64> {
    let (first, last) = (fills.first()?.0.div_euclid(HOUR_MS), fills.last()?.0.div_euclid(HOUR_MS));
    let hours = usize::try_from(last - first + 1).ok()?;
    if hours < MIN_HOURS_FOR_SHARPE {
        return None;
    }
    let mut by_hour = vec![0.0; hours];
    for (time_ms, pnl) in fills {
        by_hour[usize::try_from(time_ms.div_euclid(HOUR_MS) - first).ok()?] += pnl;
    }
    let mean = by_hour.iter().sum::<f64>() / hours as f64;
    let variance = by_hour.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (hours - 1) as f64;
    (variance > 0.0).then(|| mean / variance.sqrt() * HOURS_PER_YEAR.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_run_of_fills() {
        let fills = [(0, 0.0), (1_000, 10.0), (2_000, -4.0), (3_000, 0.0), (4_000, 6.0)];
        let summary = summary("t".into(), &fills);
        assert_eq!(summary.pnl, 12.0);
        assert_eq!(summary.trades, 5);
        assert_eq!(summary.hit_rate, Some(2.0 / 3.0), "three fills closed something, two made money");
        assert_eq!(summary.max_drawdown, 4.0);
        assert_eq!(summary.equity.last(), Some(&(4_000, 12.0)));
        assert_eq!(summary.sharpe, None, "within one hour");
    }

    #[test]
    fn sharpe_needs_enough_hours_and_grows_with_steadier_gains() {
        let steady: Vec<(i64, f64)> = (0..20).map(|h| (h * HOUR_MS, if h % 2 == 0 { 2.0 } else { 1.0 })).collect();
        let choppy: Vec<(i64, f64)> = (0..20).map(|h| (h * HOUR_MS, if h % 2 == 0 { 10.0 } else { -7.0 })).collect();
        let (steady, choppy) = (sharpe(&steady).unwrap(), sharpe(&choppy).unwrap());
        assert!(steady > choppy && choppy > 0.0, "{steady} {choppy}");
        assert_eq!(sharpe(&[(0, 1.0), (HOUR_MS, 2.0)]), None);
    }

    #[test]
    fn no_fills_is_an_empty_summary() {
        let summary = summary("t".into(), &[]);
        assert_eq!((summary.pnl, summary.trades, summary.hit_rate, summary.equity.len()), (0.0, 0, None, 0));
    }
}

//! Notices as short lines a phone shows whole: what happened first, the chain id last.

use std::fmt::Write as _;
use std::time::Duration;

use mtml_core::{Notice, NoticeKind, Side, Summary};

/// One notice as a message (a line or two).
pub fn notice(notice: &Notice) -> String {
    let mut text = headline(notice);
    if let Some(chain) = notice.chain_id() {
        let _ = write!(text, "\nchain {chain}");
    }
    text
}

/// A burst of `count` notices of one kind over `span`, shown by the first few and the last.
pub fn burst(kind: NoticeKind, count: u64, span: Duration, shown: &[Notice], last: &Notice) -> String {
    let mut text = format!("{count} {} in {}", kind.plural(), seconds(span));
    for notice in shown {
        let _ = write!(text, "\n• {}", headline(notice));
    }
    let hidden = count.saturating_sub(shown.len() as u64 + 1);
    if hidden > 0 {
        let _ = write!(text, "\n… {hidden} more");
    }
    let _ = write!(text, "\n• {}", headline(last));
    if let Some(chain) = last.chain_id() {
        let _ = write!(text, "\nlast chain {chain}");
    }
    text
}

fn seconds(span: Duration) -> String {
    let s = span.as_secs_f64();
    if s < 10.0 { format!("{s:.1} s") } else { format!("{s:.0} s") }
}

/// A price with at most five decimals and no trailing zeros (1.0813, 157.25).
fn price(value: f64) -> String {
    let text = format!("{value:.5}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

/// The notice's first line, without its chain.
fn headline(notice: &Notice) -> String {
    match notice {
        Notice::Fill { symbol, side: s, volume, price: at, slippage, .. } => {
            format!("✅ {} {volume:.2} {symbol} @ {} (slippage {slippage:+.5})", side(*s), price(*at))
        }
        Notice::Signal { symbol, side: s, volume, probability_up, model, .. } => {
            format!("📈 signal {} {volume:.2} {symbol}, p(up) {probability_up:.3} by {model}", side(*s))
        }
        Notice::RiskRejected { symbol, reason, detail, .. } => format!("⛔ risk refused {symbol}: {reason} ({detail})"),
        Notice::BrokerRejected { client_order_id, retcode, text, .. } => {
            format!("⛔ broker rejected {client_order_id}: retcode {retcode} {text}")
        }
        Notice::TradingState { from, to, reason } => format!("⚠️ trading {from} → {to}: {reason}"),
        Notice::TerminalConnected { account, gone_ms, resumed } => match gone_ms {
            Some(gone) => format!(
                "🔌 terminal {account} back after {}, resumed {resumed} ticks",
                seconds(Duration::from_millis(*gone))
            ),
            None => format!("🔌 terminal {account} connected"),
        },
        Notice::TerminalLost { account, reason } => format!("❌ terminal {account} lost: {reason}"),
        Notice::StoreDown { store, error } => format!("❌ {store} store down: {error}"),
        Notice::StoreRecovered { store, down_ms, backlog } => format!(
            "✅ {store} store back after {}, draining {backlog} held points",
            seconds(Duration::from_millis(*down_ms))
        ),
        Notice::Model { action, detail, by } => format!("🧠 model {action}: {detail} (by {by})"),
        Notice::Drift { feature, psi, threshold } => {
            format!("📉 feature drift: {feature} PSI {psi:.3} above {threshold}")
        }
        Notice::StaleModel { model, detail } => format!("📉 stale model {model}: {detail}"),
        Notice::SlowOrder { symbol, tick_to_order_us, threshold_us, .. } => format!(
            "🐢 slow order {symbol}: tick to order {:.1} ms (threshold {:.1} ms)",
            *tick_to_order_us as f64 / 1e3,
            *threshold_us as f64 / 1e3
        ),
        Notice::Service { service, state, detail } => format!("ℹ️ {service} {state}: {detail}"),
        Notice::Summary(summary) => caption(summary),
    }
}

/// A summary as the caption of its equity-curve picture.
pub fn caption(summary: &Summary) -> String {
    let mut text = format!("📊 {}\nPnL {:+.2} · {} trades", summary.title, summary.pnl, summary.trades);
    if let Some(hit_rate) = summary.hit_rate {
        let _ = write!(text, " · hit rate {:.0}%", hit_rate * 100.0);
    }
    let _ = write!(text, "\nmax drawdown {:.2}", summary.max_drawdown);
    match summary.sharpe {
        Some(sharpe) => {
            let _ = write!(text, " · Sharpe {sharpe:.2}");
        }
        None => text.push_str(" · Sharpe n/a (too few hours)"),
    }
    text
}

#[cfg(test)]
mod tests {
    use mtml_core::{ChainId, Symbol};

    use super::*;

    fn fill(price: f64) -> Notice {
        Notice::Fill {
            symbol: Symbol::new("EURUSD"),
            side: Side::Buy,
            volume: 0.1,
            price,
            slippage: 0.00002,
            chain_id: ChainId::from_bytes([7; 16]).unwrap(),
        }
    }

    #[test]
    fn a_fill_is_one_line_and_its_chain() {
        let text = notice(&fill(1.08512));
        assert_eq!(text, format!("✅ BUY 0.10 EURUSD @ 1.08512 (slippage +0.00002)\nchain {}", ChainId::from_bytes([7; 16]).unwrap()));
    }

    #[test]
    fn a_burst_counts_everything_and_shows_the_first_and_last() {
        let text = burst(NoticeKind::Fill, 12, Duration::from_millis(3_000), &[fill(1.1), fill(1.2)], &fill(1.9));
        assert!(text.starts_with("12 fills in 3.0 s\n• ✅ BUY 0.10 EURUSD @ 1.1 "), "{text}");
        assert!(text.contains("… 9 more\n• ✅ BUY 0.10 EURUSD @ 1.9"), "{text}");
        assert!(text.ends_with(&format!("last chain {}", ChainId::from_bytes([7; 16]).unwrap())), "{text}");
    }
}

//! Time bars from ticks.
//!
//! A bar is emitted when the first tick of a later bar arrives, so an empty minute produces no
//! bar, as in the real M1 files. Bar time is the open time, aligned to the bar width in UTC.

use std::collections::HashMap;

use mtml_core::{Bar, Ohlc, Symbol, Tick};

/// Builds bars of one width for every symbol.
#[derive(Debug)]
pub struct BarBuilder {
    width_ms: i64,
    open: HashMap<Symbol, Bar>,
}

impl BarBuilder {
    /// A builder for bars `width_ms` wide (60 000 for M1).
    pub fn new(width_ms: i64) -> Self {
        Self { width_ms: width_ms.max(1), open: HashMap::new() }
    }

    /// Takes a tick; returns the bar it closed, if it started a new one.
    pub fn update(&mut self, tick: &Tick) -> Option<Bar> {
        let open_time_ms = tick.time_msc.div_euclid(self.width_ms) * self.width_ms;
        match self.open.get_mut(&tick.symbol) {
            Some(bar) if bar.open_time_ms == open_time_ms => {
                bar.bid.update(tick.bid);
                bar.ask.update(tick.ask);
                bar.ticks += 1;
                None
            }
            // A tick inside an earlier bar (within the validator's tolerance) joins the open bar
            // rather than reopening a closed one: bars are final once emitted.
            Some(bar) if bar.open_time_ms > open_time_ms => {
                bar.bid.update(tick.bid);
                bar.ask.update(tick.ask);
                bar.ticks += 1;
                None
            }
            _ => {
                let bar = Bar {
                    symbol: tick.symbol.clone(),
                    open_time_ms,
                    width_ms: self.width_ms,
                    bid: Ohlc::new(tick.bid),
                    ask: Ohlc::new(tick.ask),
                    ticks: 1,
                };
                self.open.insert(tick.symbol.clone(), bar)
            }
        }
    }

    /// Closes and returns every open bar (end of a replay, or shutdown).
    pub fn flush(&mut self) -> Vec<Bar> {
        let mut bars: Vec<Bar> = self.open.drain().map(|(_, bar)| bar).collect();
        bars.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        bars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::ChainIdGenerator;
    use std::sync::Arc;

    fn tick(time_msc: i64, bid: f64) -> Tick {
        Tick {
            chain_id: ChainIdGenerator::with_prefix(1).next_id(),
            symbol: Symbol::new("EURUSD"),
            time_msc,
            bid,
            ask: bid + 0.0001,
            seq: 1,
            terminal: Arc::from("t"),
            received_ns: 1,
        }
    }

    #[test]
    fn empty_minutes_produce_no_bar() {
        let mut builder = BarBuilder::new(60_000);
        assert_eq!(builder.update(&tick(60_000, 1.0)), None);
        assert_eq!(builder.update(&tick(119_999, 1.2)), None);
        let first = builder.update(&tick(240_000, 0.9)).unwrap();
        assert_eq!(first.open_time_ms, 60_000);
        assert_eq!((first.bid.open, first.bid.high, first.bid.close), (1.0, 1.2, 1.2));
        assert_eq!(first.ticks, 2);
        let rest = builder.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].open_time_ms, 240_000);
    }
}

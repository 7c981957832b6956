//! Tick validation: what ingestion refuses, and why.
//!
//! Refused ticks are counted by reason and never silently vanish. Crossed and locked quotes are
//! real market states and pass, flagged.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use mtml_core::{Symbol, Tick};

/// Why a tick was refused. The names are stable: reports and metrics use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Bid or ask is NaN or infinite.
    NonFinitePrice,
    /// Bid or ask is zero or negative.
    NonPositivePrice,
    /// The symbol is not configured.
    UnknownSymbol,
    /// The timestamp is earlier than the symbol's latest by more than the tolerance.
    TimeWentBackwards,
    /// The same terminal sent the same sequence number again.
    DuplicateSequence,
}

impl RejectReason {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::NonFinitePrice => "non_finite_price",
            RejectReason::NonPositivePrice => "non_positive_price",
            RejectReason::UnknownSymbol => "unknown_symbol",
            RejectReason::TimeWentBackwards => "time_went_backwards",
            RejectReason::DuplicateSequence => "duplicate_sequence",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a valid tick looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteState {
    /// `ask > bid`.
    Normal,
    /// `ask == bid`.
    Locked,
    /// `ask < bid`.
    Crossed,
}

/// Checks ticks against the configured symbols and each symbol's and terminal's history.
#[derive(Debug)]
pub struct TickValidator {
    symbols: HashSet<Symbol>,
    backwards_tolerance_ms: i64,
    last_time: HashMap<Symbol, i64>,
    last_seq: HashMap<Arc<str>, u64>,
}

impl TickValidator {
    /// A validator accepting `symbols`, allowing timestamps to step back by at most
    /// `backwards_tolerance_ms` (terminals' clocks jitter when a broker's feed reorders).
    pub fn new(symbols: impl IntoIterator<Item = Symbol>, backwards_tolerance_ms: i64) -> Self {
        Self {
            symbols: symbols.into_iter().collect(),
            backwards_tolerance_ms,
            last_time: HashMap::new(),
            last_seq: HashMap::new(),
        }
    }

    /// Checks one tick and, when valid, remembers its time and sequence.
    pub fn check(&mut self, tick: &Tick) -> Result<QuoteState, RejectReason> {
        if !tick.bid.is_finite() || !tick.ask.is_finite() {
            return Err(RejectReason::NonFinitePrice);
        }
        if tick.bid <= 0.0 || tick.ask <= 0.0 {
            return Err(RejectReason::NonPositivePrice);
        }
        if !self.symbols.contains(&tick.symbol) {
            return Err(RejectReason::UnknownSymbol);
        }
        if let Some(&last) = self.last_seq.get(&tick.terminal)
            && tick.seq <= last
        {
            return Err(RejectReason::DuplicateSequence);
        }
        if let Some(&last) = self.last_time.get(&tick.symbol)
            && tick.time_msc < last - self.backwards_tolerance_ms
        {
            return Err(RejectReason::TimeWentBackwards);
        }
        self.last_seq.insert(Arc::clone(&tick.terminal), tick.seq);
        let last = self.last_time.entry(tick.symbol.clone()).or_insert(tick.time_msc);
        *last = (*last).max(tick.time_msc);
        Ok(if tick.ask > tick.bid {
            QuoteState::Normal
        } else if tick.ask == tick.bid {
            QuoteState::Locked
        } else {
            QuoteState::Crossed
        })
    }

    /// Highest sequence accepted per terminal, for ingestion acks.
    pub fn last_sequences(&self) -> &HashMap<Arc<str>, u64> {
        &self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::ChainIdGenerator;

    fn tick(seq: u64, time_msc: i64, bid: f64, ask: f64, symbol: &str) -> Tick {
        Tick {
            chain_id: ChainIdGenerator::with_prefix(1).next_id(),
            symbol: Symbol::new(symbol),
            time_msc,
            bid,
            ask,
            seq,
            terminal: Arc::from("t"),
            received_ns: 1,
        }
    }

    #[test]
    fn each_bad_tick_is_refused_with_its_reason() {
        let mut v = TickValidator::new([Symbol::new("EURUSD")], 500);
        assert_eq!(v.check(&tick(1, 10_000, 1.1, 1.2, "EURUSD")), Ok(QuoteState::Normal));
        assert_eq!(v.check(&tick(2, 10_000, f64::NAN, 1.2, "EURUSD")), Err(RejectReason::NonFinitePrice));
        assert_eq!(v.check(&tick(3, 10_000, 1.1, f64::INFINITY, "EURUSD")), Err(RejectReason::NonFinitePrice));
        assert_eq!(v.check(&tick(4, 10_000, 0.0, 1.2, "EURUSD")), Err(RejectReason::NonPositivePrice));
        assert_eq!(v.check(&tick(5, 10_000, 1.1, 1.2, "XXXYYY")), Err(RejectReason::UnknownSymbol));
        assert_eq!(v.check(&tick(1, 10_001, 1.1, 1.2, "EURUSD")), Err(RejectReason::DuplicateSequence));
        assert_eq!(v.check(&tick(6, 9_499, 1.1, 1.2, "EURUSD")), Err(RejectReason::TimeWentBackwards));
    }

    #[test]
    fn backwards_within_tolerance_passes_and_crossed_quotes_are_flagged_not_refused() {
        let mut v = TickValidator::new([Symbol::new("EURUSD")], 500);
        assert_eq!(v.check(&tick(1, 10_000, 1.1, 1.2, "EURUSD")), Ok(QuoteState::Normal));
        assert_eq!(v.check(&tick(2, 9_500, 1.2, 1.1, "EURUSD")), Ok(QuoteState::Crossed));
        assert_eq!(v.check(&tick(3, 9_600, 1.2, 1.2, "EURUSD")), Ok(QuoteState::Locked));
        // The tolerance is measured from the latest time seen, not the last tick's.
        assert_eq!(v.check(&tick(4, 9_499, 1.1, 1.2, "EURUSD")), Err(RejectReason::TimeWentBackwards));
    }
}

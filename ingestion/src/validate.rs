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
    /// The spread is wider than [`QuoteBand::max_spread`] of the mid: one side is broken.
    WideSpread,
    /// The mid is outside [`QuoteBand::max_deviation`] of the median of the symbol's recent
    /// mids, and the next quotes did not confirm the new level.
    OutlierPrice,
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
            RejectReason::WideSpread => "wide_spread",
            RejectReason::OutlierPrice => "outlier_price",
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

/// The band a quote must fall in to be believed: one bad quote (an ask ten times the price)
/// must not mark positions, set an equity high or feed the features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuoteBand {
    /// Widest spread accepted, as a fraction of the mid (0.2: 20%).
    pub max_spread: f64,
    /// Largest distance of a mid from the median of the symbol's recent mids, as a fraction of
    /// that median (0.1: 10%).
    pub max_deviation: f64,
    /// Recent mids the median is taken over.
    pub window: usize,
    /// Consecutive quotes outside the band, agreeing with each other, that confirm a real new
    /// price level (a gap after a weekend): they are then accepted and become the reference.
    pub confirm: usize,
}

impl QuoteBand {
    /// No filter at all (every finite positive quote is believed), for measuring what the filter
    /// costs.
    pub const OFF: QuoteBand = QuoteBand { max_spread: f64::INFINITY, max_deviation: f64::INFINITY, window: 0, confirm: 1 };
}

impl Default for QuoteBand {
    fn default() -> Self {
        Self { max_spread: 0.2, max_deviation: 0.1, window: 64, confirm: 5 }
    }
}

/// One symbol's recent believed mids (in arrival order, and sorted for an O(1) median) and the
/// quotes outside the band that follow them.
#[derive(Debug, Default)]
struct Reference {
    recent: std::collections::VecDeque<f64>,
    sorted: Vec<f64>,
    suspects: Vec<f64>,
}

/// The median of sorted values (NaN for none).
fn median_of_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    median_of_sorted(&sorted)
}

impl Reference {
    /// Quotes needed before the median is a reference.
    const MIN_HISTORY: usize = 3;

    fn learn(&mut self, mid: f64, window: usize) {
        self.recent.push_back(mid);
        let at = self.sorted.partition_point(|x| x.total_cmp(&mid).is_lt());
        self.sorted.insert(at, mid);
        while self.recent.len() > window.max(Self::MIN_HISTORY) {
            if let Some(old) = self.recent.pop_front() {
                let at = self.sorted.partition_point(|x| x.total_cmp(&old).is_lt());
                self.sorted.remove(at);
            }
        }
    }

    /// Checks a mid against the band, learning it when believed.
    fn check(&mut self, mid: f64, band: &QuoteBand) -> Result<(), RejectReason> {
        let outside = |reference: f64| (mid / reference - 1.0).abs() > band.max_deviation;
        if self.recent.len() >= Self::MIN_HISTORY && outside(median_of_sorted(&self.sorted)) {
            self.suspects.push(mid);
            let level = median(self.suspects.iter().copied());
            let agree = self.suspects.iter().all(|s| (s / level - 1.0).abs() <= band.max_deviation);
            if !agree {
                self.suspects.clear();
                self.suspects.push(mid);
            }
            if self.suspects.len() < band.confirm.max(1) {
                return Err(RejectReason::OutlierPrice);
            }
            tracing::warn!(mid, level, "a new price level confirmed by {} quotes; it becomes the reference", self.suspects.len());
            self.recent.clear();
            self.sorted.clear();
            for confirmed in std::mem::take(&mut self.suspects) {
                self.learn(confirmed, band.window);
            }
            return Ok(());
        }
        self.suspects.clear();
        self.learn(mid, band.window);
        Ok(())
    }
}

/// Checks ticks against the configured symbols and each symbol's and terminal's history.
#[derive(Debug)]
pub struct TickValidator {
    symbols: HashSet<Symbol>,
    backwards_tolerance_ms: i64,
    band: QuoteBand,
    last_time: HashMap<Symbol, i64>,
    last_seq: HashMap<Arc<str>, u64>,
    references: HashMap<Symbol, Reference>,
}

impl TickValidator {
    /// A validator accepting `symbols`, allowing timestamps to step back by at most
    /// `backwards_tolerance_ms` (terminals' clocks jitter when a broker's feed reorders).
    pub fn new(symbols: impl IntoIterator<Item = Symbol>, backwards_tolerance_ms: i64) -> Self {
        Self {
            symbols: symbols.into_iter().collect(),
            backwards_tolerance_ms,
            band: QuoteBand::default(),
            last_time: HashMap::new(),
            last_seq: HashMap::new(),
            references: HashMap::new(),
        }
    }

    /// The same validator believing quotes within `band`.
    #[must_use]
    pub fn with_band(mut self, band: QuoteBand) -> Self {
        self.band = band;
        self
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
        let mid = (tick.bid + tick.ask) / 2.0;
        if (tick.ask - tick.bid).abs() > self.band.max_spread * mid {
            return Err(RejectReason::WideSpread);
        }
        if self.band.window > 0 {
            self.references.entry(tick.symbol.clone()).or_default().check(mid, &self.band)?;
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
    fn one_bad_quote_is_refused_and_a_confirmed_new_level_is_believed() {
        let mut v = TickValidator::new([Symbol::new("EURUSD")], 500);
        let mut seq = 0;
        let mut check = |bid: f64, ask: f64| {
            seq += 1;
            v.check(&tick(seq, 10_000 + seq as i64, bid, ask, "EURUSD"))
        };
        for _ in 0..10 {
            assert_eq!(check(1.1000, 1.1002), Ok(QuoteState::Normal));
        }
        assert_eq!(check(1.1000, 11.002), Err(RejectReason::WideSpread), "an ask ten times the price");
        assert_eq!(check(11.000, 11.002), Err(RejectReason::OutlierPrice), "both sides ten times");
        assert_eq!(check(1.1001, 1.1003), Ok(QuoteState::Normal), "the next good quote passes");
        // A real gap of 15% (say a peg breaking): refused until five quotes agree, then believed.
        for _ in 0..4 {
            assert_eq!(check(1.2650, 1.2652), Err(RejectReason::OutlierPrice));
        }
        assert_eq!(check(1.2651, 1.2653), Ok(QuoteState::Normal), "confirmed by the fifth");
        assert_eq!(check(1.2652, 1.2654), Ok(QuoteState::Normal), "the new level is the reference");
        assert_eq!(check(1.1000, 1.1002), Err(RejectReason::OutlierPrice), "and the old one is now the outlier");
    }

    proptest::proptest! {
        /// The kept window's median is the median of the last `window` believed mids.
        #[test]
        fn the_sorted_window_keeps_the_median_of_the_last_mids(mids in proptest::collection::vec(1.0f64..1.05, 1..200), window in 3usize..40) {
            let mut reference = Reference::default();
            for &mid in &mids {
                reference.learn(mid, window);
            }
            let last: Vec<f64> = mids.iter().rev().take(window).copied().collect();
            proptest::prop_assert_eq!(median_of_sorted(&reference.sorted), median(last.into_iter()));
            proptest::prop_assert_eq!(reference.sorted.len(), reference.recent.len());
        }
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

//! Ingestion and features for one tick: the single code path shared by the live pipeline and
//! `mtml features export`, so that training and serving see identical values.

use mtml_core::{Bar, Symbol, Tick};
use mtml_feature_store::{FeatureEngine, FeatureVector};
use mtml_ingestion::{BarBuilder, QuoteBand, QuoteState, RejectReason, TickValidator};

/// What ingestion made of a valid tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// Normal, locked or crossed.
    pub quote: QuoteState,
    /// The M1 bar this tick closed, if it opened a new minute.
    pub closed_bar: Option<Bar>,
    /// Wider bars (M5, H1...) this tick closed.
    pub closed_wider: Vec<Bar>,
}

/// Validation, M1 bars and features of every symbol.
#[derive(Debug)]
pub struct Featurizer {
    validator: TickValidator,
    bars: BarBuilder,
    wider: Vec<BarBuilder>,
    engine: FeatureEngine,
}

impl Featurizer {
    /// A featurizer accepting `symbols`, building M1 bars (which the features use) and bars of
    /// the `wider_ms` widths (which are stored).
    pub fn new(symbols: impl IntoIterator<Item = Symbol>, backwards_tolerance_ms: i64, wider_ms: &[i64]) -> Self {
        Self {
            validator: TickValidator::new(symbols, backwards_tolerance_ms),
            bars: BarBuilder::new(mtml_core::MINUTE_MS),
            wider: wider_ms.iter().map(|&w| BarBuilder::new(w)).collect(),
            engine: FeatureEngine::new(),
        }
    }

    /// The same featurizer believing quotes within `band` (see [`QuoteBand`]).
    #[must_use]
    pub fn with_band(mut self, band: QuoteBand) -> Self {
        self.validator = self.validator.with_band(band);
        self
    }

    /// Validates the tick and updates bars.
    pub fn ingest(&mut self, tick: &Tick) -> Result<Ingested, RejectReason> {
        let quote = self.validator.check(tick)?;
        let closed_wider = self.wider.iter_mut().filter_map(|b| b.update(tick)).collect();
        Ok(Ingested { quote, closed_bar: self.bars.update(tick), closed_wider })
    }

    /// Updates features with the bar the tick closed (first) and the tick.
    pub fn features(&mut self, tick: &Tick, closed_bar: Option<&Bar>) -> Option<FeatureVector> {
        if let Some(bar) = closed_bar {
            self.engine.on_bar(bar);
        }
        self.engine.on_tick(tick)
    }

    /// Closes the M1 bars still open (end of input).
    pub fn flush_bars(&mut self) -> Vec<Bar> {
        self.bars.flush()
    }

    /// Closes the wider bars still open (end of input).
    pub fn flush_wider_bars(&mut self) -> Vec<Bar> {
        self.wider.iter_mut().flat_map(BarBuilder::flush).collect()
    }
}

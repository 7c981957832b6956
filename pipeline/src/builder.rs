//! Building a [`Pipeline`]: the parts it needs (symbols, models, the desk, where orders go) and
//! the ones it can do without (stores, journal, comparison settings, a shared chain log).

use std::sync::Arc;

use mtml_core::clock::{Clock, SystemClock};
use mtml_core::{ChainLog, Notices, OrderSink, Symbol};
use mtml_decision::Desk;
use mtml_feature_store::{DriftMonitor, HistoryWriter, OnlineWriter};
use mtml_ingestion::QuoteBand;
use mtml_journal::Record;
use mtml_rollout::{CompareSettings, Comparison, Models};
use tokio::sync::mpsc;

use crate::counters::{PipelineCounters, PipelineProgress};
use crate::featurize::Featurizer;
use crate::pipeline::Pipeline;

/// Builds a [`Pipeline`]. Without stores, journal or a chain log of its own, the pipeline runs
/// the tick path alone (tests and benchmarks use it so, tick in to order out, without sockets).
pub struct PipelineBuilder {
    symbols: Vec<Symbol>,
    backwards_tolerance_ms: i64,
    band: QuoteBand,
    wider_bars_ms: Vec<i64>,
    models: Models,
    desk: Desk,
    orders: Box<dyn OrderSink>,
    online: Option<OnlineWriter>,
    history: Option<HistoryWriter>,
    journal: Option<mpsc::UnboundedSender<Vec<Record>>>,
    compare: CompareSettings,
    chain_log: Arc<ChainLog>,
    progress: Arc<PipelineProgress>,
    clock: Arc<dyn Clock>,
    drift: Option<(DriftMonitor, f64)>,
    notices: Notices,
    slow_order: std::time::Duration,
    market_time_fills: Option<mtml_core::MarketTimeFills>,
}

impl PipelineBuilder {
    /// A pipeline of `symbols` predicting with `models`, deciding on `desk`, handing orders to
    /// `orders` (the bridge's router, a channel to a bridge elsewhere, a test's closure).
    pub fn new(symbols: impl IntoIterator<Item = Symbol>, models: Models, desk: Desk, orders: Box<dyn OrderSink>) -> Self {
        Self {
            symbols: symbols.into_iter().collect(),
            backwards_tolerance_ms: 1_000,
            band: QuoteBand::default(),
            wider_bars_ms: Vec::new(),
            models,
            desk,
            orders,
            online: None,
            history: None,
            journal: None,
            compare: CompareSettings { horizon_ms: 60_000, buy_above: 0.53, sell_below: 0.47 },
            chain_log: Arc::new(ChainLog::default()),
            progress: Arc::new(PipelineProgress::default()),
            clock: Arc::new(SystemClock),
            drift: None,
            notices: Notices::default(),
            slow_order: std::time::Duration::from_millis(50),
            market_time_fills: None,
        }
    }

    /// Where fills, refusals, trading state changes, drift and slow orders are told (nowhere
    /// by default).
    #[must_use]
    pub fn notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }

    /// Tick arrival to order sent above `threshold` is a slow order: counted and told
    /// (default 50 ms).
    #[must_use]
    pub fn slow_order(mut self, threshold: std::time::Duration) -> Self {
        self.slow_order = threshold;
        self
    }

    /// A replay's orders fill in market time (`fills`); the pipeline then applies each outcome
    /// before the first tick of its due time, waiting for it if need be, so that every run gives
    /// the same orders (`None`, the default: as they come).
    #[must_use]
    pub fn market_time_fills(mut self, fills: Option<mtml_core::MarketTimeFills>) -> Self {
        self.market_time_fills = fills;
        self
    }

    /// Watches the live features' drift from the training distribution in `monitor`; a feature
    /// whose PSI goes above `threshold` raises a drift alert (logged and counted).
    #[must_use]
    pub fn drift(mut self, monitor: DriftMonitor, threshold: f64) -> Self {
        self.drift = Some((monitor, threshold));
        self
    }

    /// How far back in time a tick may go before ingestion refuses it (default 1 s).
    #[must_use]
    pub fn backwards_tolerance_ms(mut self, ms: i64) -> Self {
        self.backwards_tolerance_ms = ms;
        self
    }

    /// Bars built besides M1, by width in ms (stored, not used by the features).
    #[must_use]
    pub fn wider_bars(mut self, widths_ms: Vec<i64>) -> Self {
        self.wider_bars_ms = widths_ms;
        self
    }

    /// Where every feature vector goes for readers outside the tick path.
    #[must_use]
    pub fn online(mut self, writer: OnlineWriter) -> Self {
        self.online = Some(writer);
        self
    }

    /// Where ticks, bars and feature vectors go for history.
    #[must_use]
    pub fn history(mut self, writer: Option<HistoryWriter>) -> Self {
        self.history = writer;
        self
    }

    /// Where journal records go, a group per event.
    #[must_use]
    pub fn journal(mut self, records: mpsc::UnboundedSender<Vec<Record>>) -> Self {
        self.journal = Some(records);
        self
    }

    /// How the champion/challenger comparison reads and scores signals.
    #[must_use]
    pub fn compare(mut self, settings: CompareSettings) -> Self {
        self.compare = settings;
        self
    }

    /// The chain log every stage records its spans in (shared with the bridge).
    #[must_use]
    pub fn chain_log(mut self, log: Arc<ChainLog>) -> Self {
        self.chain_log = log;
        self
    }

    /// Progress shared with other threads (replay pacing reads it).
    #[must_use]
    pub fn progress(mut self, progress: Arc<PipelineProgress>) -> Self {
        self.progress = progress;
        self
    }

    /// The band a quote must fall in to be believed (the default: spread under 20% of the mid,
    /// mid within 10% of the recent median).
    #[must_use]
    pub fn quote_band(mut self, band: QuoteBand) -> Self {
        self.band = band;
        self
    }

    /// The wall clock that dates what happens before the first tick (an operator's command, a
    /// terminal's books on connecting); after it, market time dates everything. The system
    /// clock by default.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The pipeline.
    pub fn build(self) -> Pipeline {
        Pipeline {
            featurizer: Featurizer::new(self.symbols, self.backwards_tolerance_ms, &self.wider_bars_ms)
                .with_band(self.band),
            online: self.online,
            history: self.history,
            comparison: Comparison::for_models(&self.models, self.compare),
            models: self.models,
            compare: self.compare,
            desk: self.desk,
            orders: self.orders,
            chain_log: self.chain_log,
            inbox_depth: 0,
            progress: self.progress,
            journal: self.journal,
            now_ms: 0,
            clock: self.clock,
            counters: PipelineCounters::default(),
            drift: self.drift.map(|(monitor, threshold)| crate::pipeline::Drift { monitor, threshold, drifted: Vec::new() }),
            notices: self.notices,
            slow_order_ns: u64::try_from(self.slow_order.as_nanos()).unwrap_or(u64::MAX),
            close_chains: mtml_core::ChainIdGenerator::new(),
            told_stale: Vec::new(),
            market_time_fills: self.market_time_fills,
            awaiting: Vec::new(),
        }
    }
}

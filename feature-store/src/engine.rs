//! Computing the [`FX_V1`] features, incrementally, per symbol.
//!
//! The same code serves the live pipeline and `mtml features export`, so a model sees at serving
//! time exactly the values it was trained on. Every update is O(1).

use std::collections::{HashMap, VecDeque};

use mtml_core::{Bar, ChainId, Symbol, Tick};

use crate::definitions::{FX_V1, FX_V1_LEN, FeatureSet, WARMUP_BARS};
use crate::incremental::{Ema, EwmStats, RollingStats, Rsi};

/// The features of one symbol at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureVector {
    /// Symbol.
    pub symbol: Symbol,
    /// Chain of the tick that produced the vector.
    pub chain_id: ChainId,
    /// Market time of that tick, UTC epoch ms: the vector uses no data after it.
    pub time_msc: i64,
    /// That tick's sequence number from its terminal (history keys use it to tell apart
    /// vectors of the same millisecond).
    pub seq: u64,
    /// Mid price of that tick.
    pub mid: f64,
    /// Values in [`FX_V1`] order.
    pub values: [f64; FX_V1_LEN],
}

impl FeatureVector {
    /// The set the values follow.
    pub fn feature_set(&self) -> &'static FeatureSet {
        &FX_V1
    }

    /// Values as the model's `float32` input.
    pub fn as_f32(&self) -> [f32; FX_V1_LEN] {
        self.values.map(|v| v as f32)
    }
}

const BPS: f64 = 10_000.0;

#[derive(Debug)]
struct SymbolState {
    /// Mid closes of the last 16 bars, newest last (ret_15 needs 16).
    closes: VecDeque<f64>,
    bars_seen: usize,
    ema_20: Ema,
    rsi_14: Rsi,
    rsi: Option<f64>,
    atr_14: Ema,
    returns_30: RollingStats,
    spread_stats: EwmStats,
    tick_rate: Ema,
}

impl SymbolState {
    fn new() -> Self {
        Self {
            closes: VecDeque::with_capacity(17),
            bars_seen: 0,
            ema_20: Ema::with_period(20),
            rsi_14: Rsi::new(14),
            rsi: None,
            // Wilder's smoothing is an EMA with alpha 1/period.
            atr_14: Ema::with_alpha(1.0 / 14.0),
            returns_30: RollingStats::new(30),
            spread_stats: EwmStats::new(0.01),
            tick_rate: Ema::with_alpha(0.2),
        }
    }

    fn on_bar(&mut self, bar: &Bar) {
        let close = bar.mid_close();
        let high = (bar.bid.high + bar.ask.high) * 0.5;
        let low = (bar.bid.low + bar.ask.low) * 0.5;
        if let Some(&previous) = self.closes.back() {
            self.returns_30.push((close / previous).ln() * BPS);
            let true_range = (high - low).max((high - previous).abs()).max((low - previous).abs());
            self.atr_14.update(true_range);
        }
        if self.closes.len() == 16 {
            self.closes.pop_front();
        }
        self.closes.push_back(close);
        self.ema_20.update(close);
        self.rsi = self.rsi_14.update(close);
        self.tick_rate.update(f64::from(bar.ticks));
        self.bars_seen += 1;
    }

    fn on_tick(&mut self, tick: &Tick) -> Option<[f64; FX_V1_LEN]> {
        let mid = tick.mid();
        let spread_bps = tick.spread() / mid * BPS;
        // The spread z-score learns from every tick, warmed up or not.
        let spread_z = self.spread_stats.update(spread_bps);
        if self.bars_seen < WARMUP_BARS || !self.returns_30.is_full() {
            return None;
        }
        let n = self.closes.len();
        let last = self.closes[n - 1];
        let ret = |bars: usize| (last / self.closes[n - 1 - bars]).ln() * BPS;
        let day_fraction = (tick.time_msc.rem_euclid(86_400_000)) as f64 / 86_400_000.0;
        let angle = std::f64::consts::TAU * day_fraction;
        Some([
            ret(1),
            ret(5),
            ret(15),
            (mid / last).ln() * BPS,
            (mid - self.ema_20.value()?) / mid * BPS,
            self.rsi?,
            self.atr_14.value()? / last * BPS,
            self.returns_30.std_dev(),
            spread_bps,
            spread_z,
            self.tick_rate.value()?,
            angle.sin(),
            angle.cos(),
        ])
    }
}

/// Feature state of every symbol.
#[derive(Debug, Default)]
pub struct FeatureEngine {
    symbols: HashMap<Symbol, SymbolState>,
}

impl FeatureEngine {
    /// An engine with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a closed bar. Call it before the tick that closed the bar, so that tick's features
    /// already see the bar.
    pub fn on_bar(&mut self, bar: &Bar) {
        self.symbols.entry(bar.symbol.clone()).or_insert_with(SymbolState::new).on_bar(bar);
    }

    /// Takes a tick; returns its feature vector once the symbol is warmed up.
    pub fn on_tick(&mut self, tick: &Tick) -> Option<FeatureVector> {
        let state = self.symbols.entry(tick.symbol.clone()).or_insert_with(SymbolState::new);
        let values = state.on_tick(tick)?;
        Some(FeatureVector {
            symbol: tick.symbol.clone(),
            chain_id: tick.chain_id,
            time_msc: tick.time_msc,
            seq: tick.seq,
            mid: tick.mid(),
            values,
        })
    }
}

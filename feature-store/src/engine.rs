//! Computing the [`FEATURE_SET`] features, incrementally, per symbol.
//!
//! The same code serves the live pipeline and `mtml features export`, so a model sees at serving
//! time exactly the values it was trained on. Every update is O(1).

use std::collections::{HashMap, VecDeque};

use mtml_core::{Bar, ChainId, Symbol, Tick};

use crate::definitions::{FEATURE_SET, FEATURE_COUNT, FeatureSet, WARMUP_BARS};
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
    /// Values in [`FEATURE_SET`] order.
    pub values: [f64; FEATURE_COUNT],
}

impl FeatureVector {
    /// The set the values follow.
    pub fn feature_set(&self) -> &'static FeatureSet {
        &FEATURE_SET
    }

    /// Values as the model's `float32` input.
    pub fn as_f32(&self) -> [f32; FEATURE_COUNT] {
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
    /// Bid and ask of the previous tick, for the quote imbalance.
    last_quote: Option<(f64, f64)>,
    quote_imbalance: Ema,
}

/// -1, 0 or 1: which way a quote moved (0 when it did not).
fn direction(now: f64, before: f64) -> f64 {
    if now > before {
        1.0
    } else if now < before {
        -1.0
    } else {
        0.0
    }
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
            last_quote: None,
            quote_imbalance: Ema::with_alpha(0.1),
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

    fn on_tick(&mut self, tick: &Tick) -> Option<[f64; FEATURE_COUNT]> {
        let mid = tick.mid();
        let spread_bps = tick.spread() / mid * BPS;
        // The spread z-score learns from every tick, warmed up or not.
        let spread_z = self.spread_stats.update(spread_bps);
        // Order-flow imbalance (Cont, Kukanov and Stoikov) with unit sizes, since FX quotes carry
        // none: a rising bid or a rising ask is buying pressure, a falling one selling pressure,
        // and a spread that widens or narrows symmetrically is neither. Learns from every tick.
        if let Some((bid, ask)) = self.last_quote {
            self.quote_imbalance.update((direction(tick.bid, bid) + direction(tick.ask, ask)) * 0.5);
        }
        self.last_quote = Some((tick.bid, tick.ask));
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
            // Neutral until a second tick shows a direction.
            self.quote_imbalance.value().unwrap_or(0.0),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mtml_core::{Ohlc, Symbol};

    use super::*;

    fn index(name: &str) -> usize {
        FEATURE_SET.names().position(|n| n == name).expect(name)
    }

    fn tick(time_msc: i64, bid: f64, ask: f64) -> Tick {
        Tick {
            chain_id: ChainId::from_bytes([1; 16]).unwrap(),
            symbol: Symbol::new("EURUSD"),
            time_msc,
            bid,
            ask,
            seq: time_msc as u64,
            terminal: Arc::from("1@test"),
            received_ns: 0,
        }
    }

    fn bar(minute: i64, close: f64) -> Bar {
        let ohlc = Ohlc { open: close, high: close + 0.0002, low: close - 0.0002, close };
        Bar { symbol: Symbol::new("EURUSD"), open_time_ms: minute * 60_000, width_ms: 60_000, bid: ohlc, ask: ohlc, ticks: 10 }
    }

    /// An engine that has seen enough bars for every feature, closes rising by 1 pip a bar.
    fn warmed() -> (FeatureEngine, Vec<f64>) {
        let mut engine = FeatureEngine::new();
        let closes: Vec<f64> = (0..WARMUP_BARS as i64).map(|m| 1.1 + m as f64 * 0.0001).collect();
        for (m, &c) in closes.iter().enumerate() {
            engine.on_bar(&bar(m as i64, c));
        }
        (engine, closes)
    }

    #[test]
    fn nothing_before_the_warm_up_and_a_full_vector_after_it() {
        let mut engine = FeatureEngine::new();
        for m in 0..WARMUP_BARS as i64 - 1 {
            engine.on_bar(&bar(m, 1.1));
            assert!(engine.on_tick(&tick(m * 60_000 + 1, 1.1, 1.1002)).is_none(), "bar {m}");
        }
        engine.on_bar(&bar(WARMUP_BARS as i64, 1.1));
        let v = engine.on_tick(&tick(WARMUP_BARS as i64 * 60_000 + 1, 1.1, 1.1002)).unwrap();
        assert!(v.values.iter().all(|x| x.is_finite()), "{:?}", v.values);
    }

    #[test]
    fn returns_and_spread_match_a_direct_computation() {
        let (mut engine, closes) = warmed();
        let t = WARMUP_BARS as i64 * 60_000 + 5;
        let v = engine.on_tick(&tick(t, 1.1040, 1.1042)).unwrap();
        let n = closes.len();
        let bps = |a: f64, b: f64| (a / b).ln() * 10_000.0;
        assert!((v.values[index("ret_1")] - bps(closes[n - 1], closes[n - 2])).abs() < 1e-9);
        assert!((v.values[index("ret_15")] - bps(closes[n - 1], closes[n - 16])).abs() < 1e-9);
        assert!((v.values[index("mid_vs_close")] - bps(1.1041, closes[n - 1])).abs() < 1e-9);
        assert!((v.values[index("spread_bps")] - 0.0002 / 1.1041 * 10_000.0).abs() < 1e-9);
        let angle = std::f64::consts::TAU * (t % 86_400_000) as f64 / 86_400_000.0;
        assert!((v.values[index("tod_sin")] - angle.sin()).abs() < 1e-12);
    }

    #[test]
    fn quote_imbalance_follows_the_direction_of_both_quotes() {
        let i = index("quote_imbalance");
        let t0 = WARMUP_BARS as i64 * 60_000;
        // Both quotes rising on every tick: the imbalance climbs towards +1.
        let (mut up, _) = warmed();
        let mut last = 0.0;
        for k in 0..60 {
            let bid = 1.1 + k as f64 * 0.00001;
            last = up.on_tick(&tick(t0 + k, bid, bid + 0.0002)).map_or(0.0, |v| v.values[i]);
        }
        assert!(last > 0.99 && last <= 1.0, "{last}");
        // Falling quotes: towards -1.
        let (mut down, _) = warmed();
        for k in 0..60 {
            let bid = 1.1 - k as f64 * 0.00001;
            last = down.on_tick(&tick(t0 + k, bid, bid + 0.0002)).map_or(0.0, |v| v.values[i]);
        }
        assert!((-1.0..-0.99).contains(&last), "{last}");
        // A spread that widens and narrows symmetrically is neither.
        let (mut flat, _) = warmed();
        for k in 0..60 {
            let half = if k % 2 == 0 { 0.0001 } else { 0.0002 };
            last = flat.on_tick(&tick(t0 + k, 1.1 - half, 1.1 + half)).map_or(f64::NAN, |v| v.values[i]);
        }
        assert_eq!(last, 0.0);
    }

    #[test]
    fn quote_imbalance_is_the_ewma_of_the_per_tick_directions() {
        let i = index("quote_imbalance");
        let (mut engine, _) = warmed();
        let t0 = WARMUP_BARS as i64 * 60_000;
        // bid, ask: up/up, up/same, same/down, down/down, up/down.
        let quotes = [(1.1000, 1.1002), (1.1001, 1.1003), (1.1002, 1.1003), (1.1002, 1.1002), (1.1001, 1.1001), (1.1002, 1.1000)];
        let mut expected: Option<f64> = None;
        for (k, w) in quotes.windows(2).enumerate() {
            let e = (direction(w[1].0, w[0].0) + direction(w[1].1, w[0].1)) / 2.0;
            expected = Some(expected.map_or(e, |x| x + 0.1 * (e - x)));
            if k == 0 {
                engine.on_tick(&tick(t0, quotes[0].0, quotes[0].1));
            }
            let got = engine.on_tick(&tick(t0 + k as i64 + 1, w[1].0, w[1].1)).unwrap().values[i];
            assert!((got - expected.unwrap()).abs() < 1e-12, "tick {k}: {got} vs {expected:?}");
        }
        // Per-tick directions were 1, 0.5, -0.5, -1, 0; the first sets the average.
        assert!((expected.unwrap() - 0.56205).abs() < 1e-9, "{expected:?}");
    }
}

//! History: ticks, bars and feature vectors over time, each with the chain id that produced it.
//!
//! Backends sit behind [`HistoryStore`] and pass the same [`conformance`] suite: InfluxDB through
//! its v1 HTTP API ([`influx`]) and the embedded default, SQLite through sqlx ([`sqlite`]). The
//! pipeline never writes a backend directly: [`writer::HistoryWriter`] takes points without
//! blocking, batches them, and holds them (in memory, then in a write-ahead file) while a backend
//! is down.
//!
//! A point's identity is its kind, symbol, source or timeframe or feature set, and time; writing a
//! point again replaces it. InfluxDB behaves this way natively and SQLite by primary key, so a
//! batch replayed after a failure whose outcome was unknown is stored once.

pub mod influx;
pub mod sqlite;
pub mod writer;

use mtml_core::{Bar, ChainId, Symbol, Tick};
use serde::{Deserialize, Serialize};

use crate::definitions::{FEATURE_SET, FEATURE_COUNT};
use crate::engine::FeatureVector;
pub use crate::store::StoreError;

/// Nanoseconds per millisecond. Points are keyed in nanoseconds: the millisecond of the market
/// time plus the tick's sequence number modulo a million, so that several ticks of one
/// millisecond (common in real feeds) stay distinct and a rewrite of the same tick lands on the
/// same key.
pub const NS_PER_MS: i64 = 1_000_000;

/// Key time of a tick or feature vector, nanoseconds.
pub fn key_time_ns(time_msc: i64, seq: u64) -> i64 {
    time_msc * NS_PER_MS + (seq % NS_PER_MS as u64) as i64
}

/// A stored tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickRecord {
    /// Canonical symbol.
    pub symbol: Symbol,
    /// The account the tick came from (`login@server`), or the replay's source name.
    pub source: String,
    /// Market time, UTC epoch ms.
    pub time_msc: i64,
    /// Sequence number from the terminal.
    pub seq: u64,
    /// Best bid.
    pub bid: f64,
    /// Best ask.
    pub ask: f64,
    /// The tick's chain.
    pub chain_id: ChainId,
}

impl From<&Tick> for TickRecord {
    fn from(tick: &Tick) -> Self {
        // The terminal is `login@server/session`; sessions change with each connection and
        // would make a new series each time, so the account is the source.
        let source = tick.terminal.split('/').next().unwrap_or_default().to_owned();
        Self {
            symbol: tick.symbol.clone(),
            source,
            time_msc: tick.time_msc,
            seq: tick.seq,
            bid: tick.bid,
            ask: tick.ask,
            chain_id: tick.chain_id,
        }
    }
}

/// A stored bar, with the chain of the tick that closed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarRecord {
    /// The bar.
    pub bar: Bar,
    /// Chain of the tick that closed it (the first tick of the next bar).
    pub chain_id: ChainId,
}

impl BarRecord {
    /// `M1`, `M5`, `H1`, `D1`...: the bar's timeframe name.
    pub fn timeframe(&self) -> String {
        timeframe_name(self.bar.width_ms)
    }
}

/// The MetaTrader-style name of a bar width: `M1`, `M15`, `H4`, `D1`, or `S30` for seconds.
pub fn timeframe_name(width_ms: i64) -> String {
    const DAY: i64 = 86_400_000;
    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;
    if width_ms % DAY == 0 {
        format!("D{}", width_ms / DAY)
    } else if width_ms % HOUR == 0 {
        format!("H{}", width_ms / HOUR)
    } else if width_ms % MINUTE == 0 {
        format!("M{}", width_ms / MINUTE)
    } else {
        format!("S{}", width_ms / 1000)
    }
}

/// Bar width of a timeframe name; `None` for anything else.
pub fn timeframe_width_ms(name: &str) -> Option<i64> {
    let (unit, count) = name.split_at_checked(1)?;
    let count: i64 = count.parse().ok().filter(|&c| c > 0)?;
    let unit_ms = match unit {
        "S" => 1_000,
        "M" => 60_000,
        "H" => 3_600_000,
        "D" => 86_400_000,
        _ => return None,
    };
    Some(count * unit_ms)
}

/// The serialisable form of a [`FeatureVector`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureVectorRecord {
    /// Symbol.
    pub symbol: Symbol,
    /// Chain of the tick.
    pub chain_id: ChainId,
    /// Market time, UTC epoch ms.
    pub time_msc: i64,
    /// Tick sequence.
    pub seq: u64,
    /// Mid of the tick.
    pub mid: f64,
    /// Values in feature-set order.
    pub values: Vec<f64>,
}

impl From<&FeatureVector> for FeatureVectorRecord {
    fn from(v: &FeatureVector) -> Self {
        Self { symbol: v.symbol.clone(), chain_id: v.chain_id, time_msc: v.time_msc, seq: v.seq, mid: v.mid, values: v.values.to_vec() }
    }
}

impl TryFrom<FeatureVectorRecord> for FeatureVector {
    type Error = String;

    fn try_from(r: FeatureVectorRecord) -> Result<Self, String> {
        let values: [f64; FEATURE_COUNT] = r
            .values
            .try_into()
            .map_err(|v: Vec<f64>| format!("{} values, {} has {FEATURE_COUNT}", v.len(), FEATURE_SET.id()))?;
        Ok(FeatureVector { symbol: r.symbol, chain_id: r.chain_id, time_msc: r.time_msc, seq: r.seq, mid: r.mid, values })
    }
}

/// One thing to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryPoint {
    /// An accepted tick.
    Tick(TickRecord),
    /// A closed bar.
    Bar(BarRecord),
    /// A feature vector of the current feature set.
    Features(FeatureVectorRecord),
}

impl HistoryPoint {
    /// A tick point.
    pub fn tick(tick: &Tick) -> Self {
        Self::Tick(tick.into())
    }

    /// A bar point.
    pub fn bar(bar: &Bar, chain_id: ChainId) -> Self {
        Self::Bar(BarRecord { bar: bar.clone(), chain_id })
    }

    /// A feature-vector point.
    pub fn features(vector: &FeatureVector) -> Self {
        Self::Features(vector.into())
    }

    /// Checks what every backend needs: finite numbers (InfluxDB's line protocol has no NaN).
    pub fn check(&self) -> Result<(), String> {
        let finite = |name: &str, v: f64| if v.is_finite() { Ok(()) } else { Err(format!("{name} is {v}")) };
        match self {
            HistoryPoint::Tick(t) => finite("bid", t.bid).and(finite("ask", t.ask)),
            HistoryPoint::Bar(b) => {
                let (bid, ask) = (&b.bar.bid, &b.bar.ask);
                [bid.open, bid.high, bid.low, bid.close, ask.open, ask.high, ask.low, ask.close]
                    .into_iter()
                    .try_for_each(|v| finite("bar price", v))
            }
            HistoryPoint::Features(f) => {
                finite("mid", f.mid)?;
                FEATURE_SET.names().zip(&f.values).try_for_each(|(name, &v)| finite(name, v))
            }
        }
    }
}

/// A half-open time range `[from_ms, to_ms)` of market time, at most `limit` points, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First millisecond included.
    pub from_ms: i64,
    /// First millisecond excluded.
    pub to_ms: i64,
    /// Most points returned.
    pub limit: usize,
}

impl TimeRange {
    /// `[from_ms, to_ms)`, up to `limit` points.
    pub fn new(from_ms: i64, to_ms: i64, limit: usize) -> Self {
        Self { from_ms, to_ms, limit }
    }

    /// The range in the nanoseconds points are keyed by (see [`key_time_ns`]).
    pub fn ns_bounds(&self) -> (i64, i64) {
        (self.from_ms.saturating_mul(NS_PER_MS), self.to_ms.saturating_mul(NS_PER_MS))
    }
}

/// A time-series store of ticks, bars and feature vectors.
#[async_trait::async_trait]
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// What this store is, with its address, for logs and errors.
    fn describe(&self) -> String;

    /// Stores a batch (writing a point again replaces it).
    async fn write(&self, points: &[HistoryPoint]) -> Result<(), StoreError>;

    /// Ticks of `symbol` in `range`, oldest first.
    async fn ticks(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<TickRecord>, StoreError>;

    /// Bars of `symbol` and `timeframe` (`M1`, `H1`...) opened in `range`, oldest first.
    async fn bars(&self, symbol: &Symbol, timeframe: &str, range: TimeRange) -> Result<Vec<BarRecord>, StoreError>;

    /// Feature vectors of `symbol` in `range`, oldest first.
    async fn features(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<FeatureVectorRecord>, StoreError>;
}

/// The conformance suite every [`HistoryStore`] backend must pass.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use super::*;
    use mtml_core::{ChainIdGenerator, Ohlc};

    /// A tick record.
    pub fn tick(symbol: &str, time_msc: i64, seq: u64, bid: f64) -> TickRecord {
        TickRecord {
            symbol: Symbol::new(symbol),
            source: "1001@Demo-Server".into(),
            time_msc,
            seq,
            bid,
            ask: bid + 0.00012,
            chain_id: ChainIdGenerator::with_prefix(seq + 1).next_id(),
        }
    }

    /// A bar record `width_ms` wide.
    pub fn bar(symbol: &str, open_time_ms: i64, width_ms: i64, close: f64) -> BarRecord {
        let ohlc = Ohlc { open: close - 0.0002, high: close + 0.0003, low: close - 0.0004, close };
        BarRecord {
            bar: Bar {
                symbol: Symbol::new(symbol),
                open_time_ms,
                width_ms,
                bid: ohlc,
                ask: Ohlc { open: ohlc.open + 0.0001, high: ohlc.high + 0.0001, low: ohlc.low + 0.0001, close: close + 0.0001 },
                ticks: 42,
            },
            chain_id: ChainIdGenerator::with_prefix(7).next_id(),
        }
    }

    /// A feature record.
    pub fn features(symbol: &str, time_msc: i64, seq: u64, first: f64) -> FeatureVectorRecord {
        let mut v = crate::store::conformance::vector(symbol, time_msc, first);
        v.seq = seq;
        (&v).into()
    }

    fn all() -> TimeRange {
        TimeRange::new(0, i64::MAX / NS_PER_MS, 10_000)
    }

    /// Ticks round-trip exactly and oldest first; two in the same millisecond stay distinct;
    /// symbols stay apart; a rewrite replaces; a range is `[from, to)`; a limit keeps the oldest.
    pub async fn ticks_round_trip_in_order(store: &dyn HistoryStore) {
        let eur = Symbol::new("EURUSD");
        let all = all();
        assert!(store.ticks(&eur, all).await.expect("read empty").is_empty(), "empty store has no ticks");
        let ticks = [
            tick("EURUSD", 1_000, 1, 1.10001),
            tick("EURUSD", 1_000, 2, 1.10002),
            tick("EURUSD", 2_500, 3, 1.0999),
            tick("GBPUSD", 1_500, 4, 1.6),
        ];
        let points: Vec<HistoryPoint> = ticks.iter().cloned().map(HistoryPoint::Tick).collect();
        store.write(&points).await.expect("write ticks");
        let read = store.ticks(&eur, all).await.expect("read ticks");
        assert_eq!(read, ticks[..3], "ticks round-trip exactly, oldest first, same millisecond kept apart");
        // Writing the same points again stores them once.
        store.write(&points).await.expect("rewrite ticks");
        assert_eq!(store.ticks(&eur, all).await.expect("read").len(), 3, "a rewrite replaces, never duplicates");
        let window = store.ticks(&eur, TimeRange::new(1_000, 2_500, 100)).await.expect("range");
        assert_eq!(window, ticks[..2], "range is [from, to)");
        let limited = store.ticks(&eur, TimeRange::new(0, 10_000, 1)).await.expect("limit");
        assert_eq!(limited, ticks[..1], "limit keeps the oldest");
        assert!(store.ticks(&Symbol::new("XAUUSD"), all).await.expect("unknown").is_empty(), "unknown symbol: none");
    }

    /// Bars are kept per timeframe and found by open time.
    pub async fn bars_are_kept_per_timeframe(store: &dyn HistoryStore) {
        let eur = Symbol::new("EURUSD");
        let all = all();
        let m1 = [bar("EURUSD", 60_000, 60_000, 1.1), bar("EURUSD", 120_000, 60_000, 1.2)];
        let h1 = bar("EURUSD", 0, 3_600_000, 1.15);
        let mut points: Vec<HistoryPoint> = m1.iter().cloned().map(HistoryPoint::Bar).collect();
        points.push(HistoryPoint::Bar(h1.clone()));
        store.write(&points).await.expect("write bars");
        assert_eq!(store.bars(&eur, "M1", all).await.expect("read M1"), m1, "M1 bars round-trip");
        assert_eq!(store.bars(&eur, "H1", all).await.expect("read H1"), [h1], "H1 bars apart from M1");
        assert_eq!(store.bars(&eur, "M1", TimeRange::new(61_000, 200_000, 10)).await.expect("range"), m1[1..], "bars by open time");
    }

    /// Feature vectors come back bit for bit.
    pub async fn feature_vectors_round_trip_bit_for_bit(store: &dyn HistoryStore) {
        let vectors = [features("EURUSD", 5_000, 10, 0.5), features("EURUSD", 5_000, 11, -0.25), features("EURUSD", 9_000, 12, 1.0 / 3.0)];
        let points: Vec<HistoryPoint> = vectors.iter().cloned().map(HistoryPoint::Features).collect();
        store.write(&points).await.expect("write features");
        let read = store.features(&Symbol::new("EURUSD"), all()).await.expect("read features");
        assert_eq!(read, vectors, "feature vectors round-trip exactly");
        let bits = |v: &[FeatureVectorRecord]| v.iter().flat_map(|r| r.values.iter().map(|x| x.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&read), bits(&vectors), "values bit for bit");
    }

    /// Ticks of a large batch, written as `USDJPY`.
    pub fn large_batch() -> Vec<TickRecord> {
        (0..6_000).map(|i| tick("USDJPY", 100_000 + i, 100 + i as u64, 100.0 + i as f64 * 0.001)).collect()
    }

    /// A large batch comes back whole and in order.
    pub async fn a_large_batch_comes_back_in_order(store: &dyn HistoryStore) {
        let many = large_batch();
        let points: Vec<HistoryPoint> = many.iter().cloned().map(HistoryPoint::Tick).collect();
        store.write(&points).await.expect("write 6000");
        assert_eq!(store.ticks(&Symbol::new("USDJPY"), all()).await.expect("read 6000"), many, "6 000 ticks back in order");
    }
}

/// Stamps out the history store conformance suite for one backend: a `#[tokio::test]` per check,
/// each on an empty store of its own (see `mtml_test_support::conformance_tests!`); `$suite` is
/// the path of [`conformance`] where it is used.
#[cfg(any(test, feature = "conformance"))]
#[macro_export]
macro_rules! history_store_conformance {
    ($($suite:ident)::+ => $open:path, $close:path) => {
        mtml_test_support::conformance_tests!($($suite)::+ => $open, $close;
            ticks_round_trip_in_order,
            bars_are_kept_per_timeframe,
            feature_vectors_round_trip_bit_for_bit,
            a_large_batch_comes_back_in_order);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeframe_names_follow_metatrader() {
        for (width, name) in [(60_000, "M1"), (300_000, "M5"), (900_000, "M15"), (3_600_000, "H1"), (14_400_000, "H4"), (86_400_000, "D1"), (30_000, "S30")] {
            assert_eq!(timeframe_name(width), name);
            assert_eq!(timeframe_width_ms(name), Some(width));
        }
        for bad in ["", "M", "M0", "X5", "M-1", "5M"] {
            assert_eq!(timeframe_width_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn same_millisecond_ticks_get_distinct_keys() {
        assert_ne!(key_time_ns(1_000, 1), key_time_ns(1_000, 2));
        assert_eq!(key_time_ns(1_000, 1) / NS_PER_MS, 1_000);
    }

    #[test]
    fn non_finite_values_are_named() {
        let mut f = conformance::features("EURUSD", 1, 1, 1.0);
        f.values[5] = f64::NAN;
        assert_eq!(HistoryPoint::Features(f).check(), Err("rsi_14 is NaN".into()));
    }
}

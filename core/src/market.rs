//! Market data: symbols, ticks and bars.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ChainId;

/// One minute in milliseconds, the M1 bar width.
pub const MINUTE_MS: i64 = 60_000;

/// A canonical symbol name such as `EURUSD`; broker suffixes are mapped away by the bridge.
///
/// Cheap to clone: ticks carry it through every stage.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Symbol(Arc<str>);

impl Symbol {
    /// Wraps a name. Validation of which symbols exist is ingestion's job, not this type's.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl From<&str> for Symbol {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

/// One quote as it moves through the pipeline.
///
/// Crossed (`ask < bid`) and locked (`ask == bid`) quotes are real and kept as they are; see
/// [`Tick::is_crossed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Given by the bridge when the tick arrived; everything the tick causes carries it.
    pub chain_id: ChainId,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Source time, UTC epoch milliseconds.
    pub time_msc: i64,
    /// Best bid.
    pub bid: f64,
    /// Best ask.
    pub ask: f64,
    /// Per-connection sequence number from the terminal.
    pub seq: u64,
    /// The terminal connection the tick came from (`login@server`), for sequence tracking.
    pub terminal: Arc<str>,
    /// Bridge-local monotonic time ([`crate::clock::monotonic_ns`]) when the bridge read it.
    pub received_ns: u64,
}

impl Tick {
    /// Mid price.
    pub fn mid(&self) -> f64 {
        (self.bid + self.ask) * 0.5
    }

    /// Ask minus bid; negative for a crossed quote.
    pub fn spread(&self) -> f64 {
        self.ask - self.bid
    }

    /// True when `ask < bid`: a real market state, flagged, never dropped.
    pub fn is_crossed(&self) -> bool {
        self.ask < self.bid
    }
}

/// Open, high, low and close of one price series over a bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ohlc {
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
}

impl Ohlc {
    /// A bar series started by one price.
    pub fn new(price: f64) -> Self {
        Self { open: price, high: price, low: price, close: price }
    }

    /// Takes one more price into the series.
    pub fn update(&mut self, price: f64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
    }
}

/// A time bar of bid and ask prices; its time is the open time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Open time, UTC epoch milliseconds, a multiple of the bar width.
    pub open_time_ms: i64,
    /// Bar width in milliseconds (60 000 for M1).
    pub width_ms: i64,
    /// Bid prices.
    pub bid: Ohlc,
    /// Ask prices.
    pub ask: Ohlc,
    /// Number of ticks in the bar.
    pub ticks: u32,
}

impl Bar {
    /// Close of the mid price.
    pub fn mid_close(&self) -> f64 {
        (self.bid.close + self.ask.close) * 0.5
    }
}

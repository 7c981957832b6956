//! Online feature stores: the latest vector per symbol.
//!
//! The pipeline hands every vector to an [`OnlineWriter`], which never blocks it: vectors are
//! coalesced per symbol (only the latest one matters online) and written in batches by a task of
//! their own, so a slow or absent store delays the store, not the tick. Readers (the gRPC APIs)
//! read the latest from the store itself. The tick-to-order path never reads a store: it uses the
//! vector it just computed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mtml_core::Symbol;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::Notify;

use crate::engine::FeatureVector;

/// The latest features of a symbol and how old they are.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestFeatures {
    /// The vector.
    pub vector: FeatureVector,
    /// Age at read time, milliseconds.
    pub age_ms: i64,
    /// True when older than the store's staleness limit.
    pub stale: bool,
}

/// Why a store could not answer or take a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend is unreachable, timed out or failed; retrying later may work.
    #[error("{store} unavailable: {detail}")]
    Unavailable {
        /// Which store, with its address.
        store: String,
        /// What went wrong.
        detail: String,
    },
    /// The backend refused the data itself; retrying the same data will not help.
    #[error("{store} refused the write: {detail}")]
    Refused {
        /// Which store, with its address.
        store: String,
        /// What it said.
        detail: String,
    },
    /// The backend answered with something this code cannot read.
    #[error("{store} answered something unreadable: {detail}")]
    Corrupt {
        /// Which store, with its address.
        store: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// A store of the latest feature vector per symbol. Every backend passes [`conformance`].
#[async_trait::async_trait]
pub trait OnlineStore: Send + Sync + std::fmt::Debug {
    /// What this store is, with its address, for logs and errors.
    fn describe(&self) -> String;

    /// Replaces each vector's symbol's latest vector, in one round trip where the backend allows.
    async fn put_many(&self, vectors: &[FeatureVector]) -> Result<(), StoreError>;

    /// The symbol's latest vector with its age at `now_ms`, or `None` if it has none.
    async fn latest(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<LatestFeatures>, StoreError>;
}

/// Age and staleness of a vector read at `now_ms`.
pub fn latest_at(vector: FeatureVector, now_ms: i64, stale_after_ms: i64) -> LatestFeatures {
    let age_ms = (now_ms - vector.time_msc).max(0);
    LatestFeatures { vector, age_ms, stale: age_ms > stale_after_ms }
}

/// The embedded default: in-process memory.
#[derive(Debug)]
pub struct MemoryStore {
    stale_after_ms: i64,
    latest: RwLock<HashMap<Symbol, FeatureVector>>,
}

impl MemoryStore {
    /// A store that marks vectors older than `stale_after_ms` as stale.
    pub fn new(stale_after_ms: i64) -> Self {
        Self { stale_after_ms, latest: RwLock::default() }
    }
}

#[async_trait::async_trait]
impl OnlineStore for MemoryStore {
    fn describe(&self) -> String {
        "in-process feature store".into()
    }

    async fn put_many(&self, vectors: &[FeatureVector]) -> Result<(), StoreError> {
        let mut latest = self.latest.write();
        for vector in vectors {
            latest.insert(vector.symbol.clone(), vector.clone());
        }
        Ok(())
    }

    async fn latest(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<LatestFeatures>, StoreError> {
        Ok(self.latest.read().get(symbol).cloned().map(|v| latest_at(v, now_ms, self.stale_after_ms)))
    }
}

/// What an [`OnlineWriter`] has done, readable while it runs.
#[derive(Debug, Default, Serialize)]
pub struct OnlineWriterStats {
    /// Vectors handed to the writer.
    pub accepted: AtomicU64,
    /// Vectors replaced by a newer one of the same symbol before they were written.
    pub coalesced: AtomicU64,
    /// Vectors written to the store.
    pub written: AtomicU64,
    /// Writes that failed (each retried).
    pub write_failures: AtomicU64,
    /// True while the store is failing.
    pub outage: AtomicBool,
}

#[derive(Debug, Default)]
struct Pending {
    vectors: HashMap<Symbol, FeatureVector>,
    closed: bool,
}

/// Shortest time between two writes of an [`OnlineWriter`].
pub const WRITE_INTERVAL: Duration = Duration::from_millis(2);

/// Hands vectors to an online store without blocking the caller.
///
/// Online, only a symbol's latest vector matters, so while a write is in flight (or the store is
/// down) newer vectors replace older ones of the same symbol: the backlog is bounded by the number
/// of symbols and the store is never behind by more than one write once it answers again.
#[derive(Debug, Clone)]
pub struct OnlineWriter {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    stats: Arc<OnlineWriterStats>,
}

impl OnlineWriter {
    /// Starts the writing task on the current tokio runtime. It stops after [`Self::close`],
    /// once everything handed to it has been written.
    pub fn spawn(store: Arc<dyn OnlineStore>, retry: Duration) -> (Self, tokio::task::JoinHandle<()>) {
        let writer = Self { pending: Arc::default(), wake: Arc::new(Notify::new()), stats: Arc::default() };
        let span = tracing::info_span!("task", name = "online_writer");
        let task = tokio::spawn(tracing::Instrument::instrument(writer.clone().run(store, retry), span));
        (writer, task)
    }

    /// Takes a vector. Never blocks on the store.
    pub fn put(&self, vector: &FeatureVector) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let replaced = self.pending.lock().vectors.insert(vector.symbol.clone(), vector.clone());
        if replaced.is_some() {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        self.wake.notify_one();
    }

    /// Asks the task to stop once the pending vectors are written.
    pub fn close(&self) {
        self.pending.lock().closed = true;
        self.wake.notify_one();
    }

    /// Counters.
    pub fn stats(&self) -> Arc<OnlineWriterStats> {
        Arc::clone(&self.stats)
    }

    async fn run(self, store: Arc<dyn OnlineStore>, retry: Duration) {
        let mut failures_since_close = 0;
        loop {
            let (batch, closed) = {
                let mut pending = self.pending.lock();
                (std::mem::take(&mut pending.vectors), pending.closed)
            };
            if batch.is_empty() {
                if closed {
                    return;
                }
                self.wake.notified().await;
                continue;
            }
            let vectors: Vec<FeatureVector> = batch.into_values().collect();
            match store.put_many(&vectors).await {
                Ok(()) => {
                    self.stats.written.fetch_add(vectors.len() as u64, Ordering::Relaxed);
                    if self.stats.outage.swap(false, Ordering::Relaxed) {
                        tracing::info!(store = %store.describe(), "online feature store answers again");
                    }
                    // Readers see a vector at most this much later; the task wakes at most this
                    // often instead of once per tick, and newer vectors coalesce meanwhile.
                    if !closed {
                        tokio::time::sleep(WRITE_INTERVAL).await;
                    }
                }
                Err(error) => {
                    self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                    if !self.stats.outage.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "online feature store write failed; keeping each symbol's latest vector and retrying");
                    }
                    // Put back what no newer vector has replaced meanwhile.
                    let (closed, left) = {
                        let mut pending = self.pending.lock();
                        for vector in vectors {
                            pending.vectors.entry(vector.symbol.clone()).or_insert(vector);
                        }
                        (pending.closed, pending.vectors.len())
                    };
                    if closed {
                        failures_since_close += 1;
                        if failures_since_close > 3 {
                            // Derived data: the next run recomputes it from the next ticks.
                            tracing::warn!(%error, vectors = left, "online feature store still failing at shutdown; latest vectors not written");
                            return;
                        }
                    }
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }
}

/// The conformance suite every [`OnlineStore`] backend must pass.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use super::*;
    use mtml_core::ChainIdGenerator;

    /// A vector of `symbol` at `time_msc` whose first value is `first` (the rest vary too).
    pub fn vector(symbol: &str, time_msc: i64, first: f64) -> FeatureVector {
        let mut values = [0.0; crate::FEATURE_COUNT];
        for (i, v) in values.iter_mut().enumerate() {
            *v = first + i as f64 * 0.1 - 0.3;
        }
        values[0] = first;
        FeatureVector {
            symbol: Symbol::new(symbol),
            chain_id: ChainIdGenerator::with_prefix(9).next_id(),
            time_msc,
            seq: u64::try_from(time_msc).unwrap_or(0),
            mid: 1.1 + first / 1e4,
            values,
        }
    }

    // Every check takes a store that holds nothing and marks vectors older than 5 000 ms stale.

    /// An empty store has nothing, for any symbol.
    pub async fn an_empty_store_has_nothing(store: &dyn OnlineStore) {
        assert_eq!(store.latest(&Symbol::new("EURUSD"), 0).await.expect("read empty"), None, "empty store has nothing");
        store.put_many(&[vector("GBPUSD", 1_000, 7.0)]).await.expect("put");
        assert_eq!(store.latest(&Symbol::new("XAUUSD"), 0).await.expect("read"), None, "unknown symbol has nothing");
    }

    /// The latest put wins, every field kept exactly, its age from the vector's time.
    pub async fn the_latest_put_wins_whole(store: &dyn OnlineStore) {
        store.put_many(&[vector("EURUSD", 1_000, 1.5)]).await.expect("put");
        let newer = vector("EURUSD", 2_000, 2.5);
        store.put_many(std::slice::from_ref(&newer)).await.expect("put newer");
        let latest = store.latest(&Symbol::new("EURUSD"), 3_000).await.expect("read").expect("present");
        assert_eq!(latest.vector, newer, "latest put wins, every field kept exactly");
        assert_eq!(latest.age_ms, 1_000, "age from the vector's time");
        assert!(!latest.stale, "fresh within the limit");
    }

    /// Past the limit a vector is still served, marked stale.
    pub async fn a_vector_past_the_limit_is_stale(store: &dyn OnlineStore) {
        store.put_many(&[vector("EURUSD", 2_000, 2.5)]).await.expect("put");
        let old = store.latest(&Symbol::new("EURUSD"), 7_001).await.expect("read").expect("present");
        assert!(old.stale, "stale past the limit");
        assert_eq!(old.age_ms, 5_001, "age past the limit");
    }

    /// Symbols are independent.
    pub async fn symbols_are_independent(store: &dyn OnlineStore) {
        store.put_many(&[vector("EURUSD", 1_000, 1.5), vector("GBPUSD", 1_000, 7.0)]).await.expect("put");
        store.put_many(&[vector("EURUSD", 2_000, 2.5)]).await.expect("put newer");
        let other = store.latest(&Symbol::new("GBPUSD"), 1_000).await.expect("read").expect("present");
        assert_eq!(other.vector.values[0], 7.0, "symbols are independent");
    }

    /// Values round-trip bit for bit, extremes included.
    pub async fn values_round_trip_bit_for_bit(store: &dyn OnlineStore) {
        let extreme = FeatureVector { values: [f64::MIN_POSITIVE, -0.0, 1e300, -1e-300, 0.1 + 0.2, 1.0 / 3.0, 0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0], ..vector("EURUSD", 4_000, 0.0) };
        store.put_many(std::slice::from_ref(&extreme)).await.expect("put extreme values");
        let read = store.latest(&Symbol::new("EURUSD"), 4_000).await.expect("read").expect("present");
        assert_eq!(read.vector.values.map(f64::to_bits), extreme.values.map(f64::to_bits), "values round-trip bit for bit");
    }
}

/// Stamps out the online store conformance suite for one backend: a `#[tokio::test]` per check,
/// each on an empty store of its own marking vectors older than 5 000 ms stale (see
/// `mtml_test_support::conformance_tests!`); `$suite` is the path of [`conformance`] where it is
/// used.
#[cfg(any(test, feature = "conformance"))]
#[macro_export]
macro_rules! online_store_conformance {
    ($($suite:ident)::+ => $open:path, $close:path) => {
        mtml_test_support::conformance_tests!($($suite)::+ => $open, $close;
            an_empty_store_has_nothing,
            the_latest_put_wins_whole,
            a_vector_past_the_limit_is_stale,
            symbols_are_independent,
            values_round_trip_bit_for_bit);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    mod memory_store {
        use super::*;

        async fn open() -> (MemoryStore, ()) {
            (MemoryStore::new(5_000), ())
        }

        async fn close(_store: MemoryStore, (): ()) {}

        crate::online_store_conformance!(crate::store::conformance => open, close);
    }

    /// A store that fails while `down` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: MemoryStore,
        down: AtomicBool,
        calls: AtomicU64,
    }

    #[async_trait::async_trait]
    impl OnlineStore for Flaky {
        fn describe(&self) -> String {
            "flaky test store".into()
        }
        async fn put_many(&self, vectors: &[FeatureVector]) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable { store: self.describe(), detail: "down".into() });
            }
            self.inner.put_many(vectors).await
        }
        async fn latest(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<LatestFeatures>, StoreError> {
            self.inner.latest(symbol, now_ms).await
        }
    }

    impl Default for MemoryStore {
        fn default() -> Self {
            Self::new(5_000)
        }
    }

    #[tokio::test]
    async fn the_writer_keeps_each_symbols_latest_vector_through_an_outage() {
        let store = Arc::new(Flaky::default());
        store.down.store(true, Ordering::Relaxed);
        let (writer, task) = OnlineWriter::spawn(store.clone(), Duration::from_millis(5));
        for t in 0..100 {
            writer.put(&conformance::vector("EURUSD", t, t as f64));
            writer.put(&conformance::vector("GBPUSD", t, -(t as f64)));
        }
        while store.calls.load(Ordering::Relaxed) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(writer.stats().outage.load(Ordering::Relaxed), "the outage shows");
        assert_eq!(store.latest(&Symbol::new("EURUSD"), 0).await.unwrap(), None);
        store.down.store(false, Ordering::Relaxed);
        writer.close();
        task.await.unwrap();
        let eur = store.latest(&Symbol::new("EURUSD"), 99).await.unwrap().unwrap();
        let gbp = store.latest(&Symbol::new("GBPUSD"), 99).await.unwrap().unwrap();
        assert_eq!((eur.vector.values[0], gbp.vector.values[0]), (99.0, -99.0));
        let stats = writer.stats();
        assert!(!stats.outage.load(Ordering::Relaxed), "the outage is over");
        assert_eq!(stats.accepted.load(Ordering::Relaxed), 200);
        assert!(stats.write_failures.load(Ordering::Relaxed) >= 2);
    }
}

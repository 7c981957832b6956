//! Online feature stores: the latest vector per symbol.
//!
//! The pipeline writes every vector; readers (the prediction API, dashboards) read the latest.
//! The tick-to-order path never reads a store: it uses the vector it just computed.

use std::collections::HashMap;

use mtml_core::Symbol;
use parking_lot::RwLock;

use crate::engine::FeatureVector;

/// The latest features of a symbol and how old they are.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestFeatures {
    /// The vector.
    pub vector: FeatureVector,
    /// Age at read time, milliseconds of market time.
    pub age_ms: i64,
    /// True when older than the store's staleness limit.
    pub stale: bool,
}

/// Why a store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend is unreachable or failed.
    #[error("feature store backend unavailable: {0}")]
    Unavailable(String),
}

/// A store of the latest feature vector per symbol. Every backend passes the same test suite.
pub trait OnlineStore: Send + Sync {
    /// Replaces the symbol's latest vector.
    fn put(&self, vector: &FeatureVector) -> Result<(), StoreError>;

    /// The symbol's latest vector with its age at `now_ms`, or `None` if it has none.
    fn latest(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<LatestFeatures>, StoreError>;
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

impl OnlineStore for MemoryStore {
    fn put(&self, vector: &FeatureVector) -> Result<(), StoreError> {
        self.latest.write().insert(vector.symbol.clone(), vector.clone());
        Ok(())
    }

    fn latest(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<LatestFeatures>, StoreError> {
        Ok(self.latest.read().get(symbol).map(|vector| {
            let age_ms = (now_ms - vector.time_msc).max(0);
            LatestFeatures { vector: vector.clone(), age_ms, stale: age_ms > self.stale_after_ms }
        }))
    }
}

/// The conformance suite every [`OnlineStore`] backend must pass.
pub mod conformance {
    use super::*;
    use mtml_core::ChainIdGenerator;

    fn vector(symbol: &str, time_msc: i64, first: f64) -> FeatureVector {
        let mut values = [0.0; crate::FX_V1_LEN];
        values[0] = first;
        FeatureVector {
            symbol: Symbol::new(symbol),
            chain_id: ChainIdGenerator::with_prefix(9).next_id(),
            time_msc,
            mid: 1.1,
            values,
        }
    }

    /// Runs every check against `store`, which must be empty and mark vectors older than
    /// 5 000 ms stale. Panics with the failing check's name.
    pub fn run_all(store: &dyn OnlineStore) {
        let eurusd = Symbol::new("EURUSD");
        assert_eq!(store.latest(&eurusd, 0).expect("read empty"), None, "empty store has nothing");
        store.put(&vector("EURUSD", 1_000, 1.5)).expect("put");
        store.put(&vector("GBPUSD", 1_000, 7.0)).expect("put");
        store.put(&vector("EURUSD", 2_000, 2.5)).expect("put newer");
        let latest = store.latest(&eurusd, 3_000).expect("read").expect("present");
        assert_eq!(latest.vector.values[0], 2.5, "latest put wins");
        assert_eq!(latest.vector.time_msc, 2_000, "time kept");
        assert_eq!(latest.age_ms, 1_000, "age from market time");
        assert!(!latest.stale, "fresh within the limit");
        let old = store.latest(&eurusd, 7_001).expect("read").expect("present");
        assert!(old.stale, "stale past the limit");
        let other = store.latest(&Symbol::new("GBPUSD"), 1_000).expect("read").expect("present");
        assert_eq!(other.vector.values[0], 7.0, "symbols are independent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        conformance::run_all(&MemoryStore::new(5_000));
    }
}

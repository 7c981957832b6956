//! Features, computed once in Rust for training and serving alike, and the stores that keep them.
//!
//! - [`definitions`]: the versioned feature set ([`FEATURE_SET`]), declared in one place.
//! - [`incremental`]: the O(1) statistics behind it (EMA, RSI, Welford windows).
//! - [`engine`]: per-symbol feature state, updated per bar and per tick.
//! - [`store`]: online stores of the latest vector per symbol behind one trait (memory, and
//!   [`redis_store`]), and the [`OnlineWriter`] that feeds them off the tick path.
//! - [`history`]: ticks, bars and feature vectors over time (SQLite, InfluxDB), and the
//!   [`HistoryWriter`] that holds points through an outage.

pub mod definitions;
pub mod drift;
pub mod engine;
pub mod history;
pub mod incremental;
pub mod redis_store;
pub mod store;

pub use definitions::{FEATURE_SET, FEATURE_COUNT, FeatureDef, FeatureSet, WARMUP_BARS};
pub use drift::{DistributionError, DriftMonitor, FeatureDistribution};
pub use engine::{FeatureEngine, FeatureVector};
pub use history::writer::{HistoryWriter, WriterSettings, WriterSnapshot};
pub use history::{HistoryPoint, HistoryStore, TimeRange};
pub use redis_store::{RedisSettings, RedisStore};
pub use store::{LatestFeatures, MemoryStore, OnlineStore, OnlineWriter, OnlineWriterStats, StoreError};

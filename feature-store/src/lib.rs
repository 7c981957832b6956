//! Features, computed once in Rust for training and serving alike.
//!
//! - [`definitions`]: the versioned feature set ([`FX_V1`]), declared in one place.
//! - [`incremental`]: the O(1) statistics behind it (EMA, RSI, Welford windows).
//! - [`engine`]: per-symbol feature state, updated per bar and per tick.
//! - [`store`]: online stores of the latest vector per symbol, behind one trait.

pub mod definitions;
pub mod engine;
pub mod incremental;
pub mod store;

pub use definitions::{FX_V1, FX_V1_LEN, FeatureDef, FeatureSet, WARMUP_BARS};
pub use engine::{FeatureEngine, FeatureVector};
pub use store::{LatestFeatures, MemoryStore, OnlineStore, StoreError};

//! Model rollout: champion and challenger, how they share traffic, how they compare, and how a
//! registry change comes into force on a running instance.
//!
//! - [`models`]: the model set the pipeline predicts with ([`Models`]), the challenger's
//!   [`Role`] (shadow, or canary split by chain id), and [`build_models`] from a registry state.
//! - [`comparison`]: champion against challenger on the same traffic, and its report.
//! - [`gate`]: the automatic promote-or-rollback verdict on a report.
//! - [`validate`]: the one feature-set check every model passes, and checked registration.
//! - [`follower`]: [`RolloutFollower`], which loads a registry change completely (off the async
//!   runtime) and hands it to a [`ModelSetTarget`] (the pipeline) between two ticks.
//!
//! This crate does not name the pipeline: the pipeline implements [`ModelSetTarget`].

pub mod comparison;
mod error;
pub mod follower;
pub mod gate;
pub mod models;
pub mod validate;

pub use comparison::{CompareSettings, Comparison, ComparisonReport, SideReport};
pub use error::RolloutError;
pub use follower::{ModelSetTarget, RolloutFollower, Serving};
pub use gate::{Gate, Verdict};
pub use models::{ChallengerSlot, Models, Predicted, Role, Slot, build_models};
pub use validate::{FeatureSetMismatch, UploadRequest, canary_symbols, check_against_feature_set, register, validate};

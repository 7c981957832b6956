//! The rollout crate's error.

use mtml_inference::InferenceError;
use mtml_registry::RegistryError;

use crate::validate::FeatureSetMismatch;

/// Why a model was not validated, loaded or rolled out. Messages name the model or the upload.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The bytes do not load in ONNX Runtime.
    #[error("{label} is not a model mtml can serve: {source}")]
    NotServable {
        /// The upload or version.
        label: String,
        /// The loader's reason.
        source: InferenceError,
    },
    /// A registered version failed to load.
    #[error("loading {label}: {source}")]
    Load {
        /// `name:version`.
        label: String,
        /// The loader's reason.
        source: InferenceError,
    },
    /// The model does not take the features this build computes.
    #[error("refused: {0}")]
    Refused(FeatureSetMismatch),
    /// A registered version does not take the features this build computes.
    #[error("{label}: {mismatch}")]
    Mismatch {
        /// `name:version`.
        label: String,
        /// The difference.
        mismatch: FeatureSetMismatch,
    },
    /// The training metrics are not a JSON object.
    #[error("{reason} (uploading {label})")]
    Metadata {
        /// The upload.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The model server refused a version.
    #[error(transparent)]
    Serve(#[from] mtml_inference::ServeError),
    /// The pipeline this rollout feeds has stopped.
    #[error("the pipeline has stopped")]
    PipelineStopped,
    /// A rollout state without a champion cannot be applied.
    #[error("no champion")]
    NoChampion,
    /// A registry revision failed to come into force here; the previous models keep serving.
    #[error("revision {revision}: {source}")]
    NotApplied {
        /// The revision.
        revision: i64,
        /// Why.
        source: Box<RolloutError>,
    },
    /// A validation thread died.
    #[error("validation task failed: {0}")]
    Task(String),
}

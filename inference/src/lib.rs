//! Serving ONNX models in process through ONNX Runtime.
//!
//! - [`runtime`]: loading the ONNX Runtime library once per process.
//! - [`model`]: a loaded model version, its checked signature, and prediction.
//! - [`server`]: serving many callers: worker sessions per model version, hot swap, statistics.
//!
//! Inference is synchronous and CPU-bound: callers run it on their own threads (the pipeline
//! thread), never on the async runtime.

pub mod model;
pub mod runtime;
pub mod server;

pub use model::{Model, ModelSignature};
pub use runtime::{OnnxRuntime, TELEMETRY_OFF_ENV, library_candidates, locate_library, user_cache_dir};
pub use server::{LoadedModel, ModelIndexEntry, ModelRepository, ModelServer, ServeError};

/// Why a model cannot load or predict. Messages name the model and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The ONNX Runtime library is not where it was looked for.
    #[error(
        "ONNX Runtime library not found: {0}; run `cargo xtask setup`, or set runtime.onnxruntime_lib (MTML_RUNTIME_ONNXRUNTIME_LIB) to its path"
    )]
    RuntimeMissing(String),
    /// The library failed to load or initialise.
    #[error("cannot initialise ONNX Runtime: {0}")]
    Runtime(String),
    /// The model file is unreadable or not a valid ONNX model.
    #[error("cannot load {0}")]
    Load(String),
    /// The model's inputs or outputs are not what mtml serves.
    #[error("model {model} has an unsupported signature: {reason}")]
    Signature {
        /// Model name.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A feature vector of the wrong length.
    #[error("model {model} expects {expected} features, got {got}")]
    Shape {
        /// Model name.
        model: String,
        /// Features the model takes.
        expected: usize,
        /// Features given.
        got: usize,
    },
    /// A NaN or infinite feature.
    #[error("model {model}: feature {index} is not finite")]
    NonFinite {
        /// Model name.
        model: String,
        /// Index of the first bad feature.
        index: usize,
    },
    /// ONNX Runtime failed while running the model.
    #[error("inference failed: {0}")]
    Run(String),
}

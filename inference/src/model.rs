//! One loaded model version and its signature.

use std::path::Path;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::{InferenceError, OnnxRuntime};

/// What a model takes and gives, read from the ONNX file and checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSignature {
    /// Name of the single `float32` input, shape `[batch, features]`.
    pub input: String,
    /// Number of features the input takes.
    pub features: usize,
    /// Name of the `float32` `[batch, 2]` class-probability output.
    pub probabilities: String,
    /// Feature set the model was trained on (`metadata_props["feature_set"]`), e.g. `fx@2`.
    pub feature_set: Option<String>,
}

/// A model ready to predict: one ONNX Runtime session, used by one worker at a time.
///
/// `Session::run` takes `&mut self`, so each worker thread owns its own `Model` rather than
/// sharing one behind a lock.
pub struct Model {
    name: String,
    signature: ModelSignature,
    session: Session,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.name).field("signature", &self.signature).finish()
    }
}

impl Model {
    /// Loads a model file, checks its signature, and warms it up with one prediction.
    pub fn load(runtime: &OnnxRuntime, name: &str, path: &Path) -> Result<Self, InferenceError> {
        let bytes = std::fs::read(path)
            .map_err(|e| InferenceError::Load(format!("{}: {e}", path.display())))?;
        Self::from_bytes(runtime, name, &bytes)
    }

    /// Loads a model from memory; see [`Model::load`].
    pub fn from_bytes(
        runtime: &OnnxRuntime,
        name: &str,
        bytes: &[u8],
    ) -> Result<Self, InferenceError> {
        let load = |e: ort::Error| InferenceError::Load(format!("model {name}: {e}"));
        let session = Session::builder(runtime.environment())
            .map_err(load)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load(e.into()))?
            .with_intra_threads(1)
            .map_err(|e| load(e.into()))?
            .commit_from_memory(bytes)
            .map_err(load)?;
        let signature = signature(name, &session)?;
        let mut model = Self { name: name.to_owned(), signature, session };
        let zeros = vec![0f32; model.signature.features];
        model.predict(&zeros)?;
        Ok(model)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the model takes and gives.
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Class probabilities, `[batch, 2]` row-major, for `batch` rows of features laid out
    /// row-major in `input` (`batch * features` values).
    pub fn infer(&mut self, input: &[f32], batch: usize) -> Result<Vec<f32>, InferenceError> {
        let features = self.signature.features;
        if batch == 0 || input.len() != batch * features {
            return Err(InferenceError::Shape {
                model: self.name.clone(),
                expected: batch.max(1) * features,
                got: input.len(),
            });
        }
        if let Some(index) = input.iter().position(|v| !v.is_finite()) {
            return Err(InferenceError::NonFinite { model: self.name.clone(), index });
        }
        let run = |e: ort::Error| InferenceError::Run(format!("model {}: {e}", self.name));
        let tensor = TensorRef::from_array_view(([batch, features], input)).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs![self.signature.input.as_str() => tensor])
            .map_err(|e| InferenceError::Run(format!("model {}: {e}", self.name)))?;
        let (_, probabilities) = outputs[self.signature.probabilities.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| InferenceError::Run(format!("model {}: {e}", self.name)))?;
        if probabilities.len() != batch * 2 {
            return Err(InferenceError::Run(format!(
                "model {}: {} probabilities for a batch of {batch}",
                self.name,
                probabilities.len()
            )));
        }
        Ok(probabilities.to_vec())
    }

    /// Probability of the "up" class for one feature vector.
    pub fn predict(&mut self, features: &[f32]) -> Result<f32, InferenceError> {
        let probabilities = self.infer(features, 1)?;
        probabilities.get(1).copied().ok_or_else(|| {
            InferenceError::Run(format!("model {}: probability output has no class 1", self.name))
        })
    }
}

fn signature(name: &str, session: &Session) -> Result<ModelSignature, InferenceError> {
    let bad = |reason: String| InferenceError::Signature { model: name.to_owned(), reason };
    let [input] = session.inputs() else {
        return Err(bad(format!("expected 1 input, found {}", session.inputs().len())));
    };
    let features = match input.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } if shape.len() == 2 => {
            usize::try_from(shape[1]).map_err(|_| {
                bad(format!("input {} has no fixed feature dimension: {shape:?}", input.name()))
            })?
        }
        other => {
            return Err(bad(format!(
                "input {} must be float32 [batch, features], found {other:?}",
                input.name()
            )));
        }
    };
    let probabilities = session
        .outputs()
        .iter()
        .find(|output| {
            matches!(output.dtype(), ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }
                if shape.len() == 2 && shape[1] == 2)
        })
        .ok_or_else(|| bad("no float32 [batch, 2] probability output".to_owned()))?
        .name()
        .to_owned();
    let feature_set = session.metadata().ok().and_then(|m| m.custom("feature_set"));
    Ok(ModelSignature { input: input.name().to_owned(), features, probabilities, feature_set })
}

//! The one check every model mtml takes must pass, and registration of a checked upload.
//!
//! A model must load in ONNX Runtime (so a truncated file or something that is not ONNX is
//! refused with the loader's reason), its input must take the features of the feature set it
//! declares, and that must be the set this build computes; a mismatch is refused with the
//! difference spelled out. Loading builds and warms an ONNX Runtime session, which is CPU work
//! of tens of milliseconds: [`register`] runs it on a blocking thread, never on the async
//! runtime.

use mtml_core::clock::{Clock as _, SystemClock};
use mtml_feature_store::FEATURE_SET;
use mtml_inference::{Model, OnnxRuntime};
use mtml_registry::{NewVersion, Registry, VersionRow};

use crate::RolloutError;

/// Why a model does not take the features this build computes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FeatureSetMismatch(pub String);

/// Checks a model against the feature set this build computes; the error spells out the
/// difference. With `require_declared`, a model that declares no feature set is refused too.
/// The one check for every model mtml takes: the configured live model and uploads alike.
pub fn check_against_feature_set(model: &Model, require_declared: bool) -> Result<(), FeatureSetMismatch> {
    let signature = model.signature();
    let expected = FEATURE_SET.id();
    let names: Vec<&str> = FEATURE_SET.features.iter().map(|f| f.name).collect();
    match &signature.feature_set {
        Some(declared) if *declared != expected => {
            return Err(FeatureSetMismatch(format!(
                "model {} declares feature set {declared}, but this build computes {expected} ({} features: {})",
                model.name(),
                names.len(),
                names.join(", ")
            )));
        }
        None if require_declared => {
            return Err(FeatureSetMismatch(format!(
                "model {} declares no feature set (metadata_props[\"feature_set\"]); this build computes {expected}",
                model.name()
            )));
        }
        _ => {}
    }
    if signature.features != names.len() {
        let difference = if signature.features < names.len() {
            format!("missing {}", names[signature.features..].join(", "))
        } else {
            format!("{} more than the set has", signature.features - names.len())
        };
        return Err(FeatureSetMismatch(format!(
            "model {} input {} takes {} features, but feature set {expected} has {} ({difference})",
            model.name(),
            signature.input,
            signature.features,
            names.len()
        )));
    }
    Ok(())
}

/// A model's bytes to validate and register, wherever they came from (a file, a gRPC upload).
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// Name to register under.
    pub name: String,
    /// The ONNX file's bytes.
    pub bytes: Vec<u8>,
    /// Training metrics, a JSON object, or empty.
    pub metrics_json: String,
    /// Who uploads it.
    pub uploaded_by: String,
    /// What to call it in errors (a path, "upload of NAME").
    pub label: String,
}

/// A canary's symbols as an instance trades them (`eurusd` is its `EURUSD`); a symbol it does not
/// trade is refused, since a canary there would never act.
pub fn canary_symbols(asked: &[String], traded: &[String]) -> Result<Vec<String>, String> {
    asked
        .iter()
        .map(|symbol| {
            traded.iter().find(|t| t.eq_ignore_ascii_case(symbol.trim())).cloned().ok_or_else(|| {
                format!("{symbol} is not traded here (pipeline.symbols: {}): a canary on it would never act", traded.join(", "))
            })
        })
        .collect()
}

/// Training metrics as stored: a JSON object, compacted; empty text is `{}`. The error says what
/// is wrong with the text, not which file it came from.
pub fn parse_metrics(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Ok("{}".to_owned());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the training metadata is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("the training metadata must be a JSON object".into());
    }
    Ok(value.to_string())
}

/// Validates an upload off the async runtime: it loads, it takes the feature set this build
/// computes (declared), and its metrics are a JSON object. Returns the version to register.
pub fn validate(runtime: &OnnxRuntime, upload: UploadRequest) -> Result<NewVersion, RolloutError> {
    let model = Model::from_bytes(runtime, &upload.name, &upload.bytes)
        .map_err(|source| RolloutError::NotServable { label: upload.label.clone(), source })?;
    check_against_feature_set(&model, true).map_err(RolloutError::Refused)?;
    let metrics = parse_metrics(&upload.metrics_json)
        .map_err(|reason| RolloutError::Metadata { label: upload.label.clone(), reason })?;
    let signature = model.signature();
    Ok(NewVersion {
        name: upload.name,
        input_name: signature.input.clone(),
        features: i64::try_from(signature.features).unwrap_or(i64::MAX),
        output_name: signature.probabilities.clone(),
        feature_set: signature.feature_set.clone().unwrap_or_default(),
        metrics,
        uploaded_by: upload.uploaded_by,
        uploaded_ms: SystemClock.now_ms(),
        onnx: upload.bytes,
    })
}

/// Validates a model on a blocking thread (see [`validate`]) and registers it; returns what was
/// registered.
pub async fn register(runtime: &OnnxRuntime, registry: &Registry, upload: UploadRequest) -> Result<VersionRow, RolloutError> {
    let runtime = runtime.clone();
    let new = tokio::task::spawn_blocking(move || validate(&runtime, upload))
        .await
        .map_err(|e| RolloutError::Task(e.to_string()))??;
    Ok(registry.register(&new).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_acts_only_on_traded_symbols() {
        let traded = ["EURUSD".to_owned(), "GBPUSD".to_owned()];
        assert_eq!(canary_symbols(&["eurusd".into()], &traded), Ok(vec!["EURUSD".to_owned()]));
        let error = canary_symbols(&["EURUSD".into(), "USDJPY".into()], &traded).unwrap_err();
        assert_eq!(error, "USDJPY is not traded here (pipeline.symbols: EURUSD, GBPUSD): a canary on it would never act");
    }
}

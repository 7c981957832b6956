//! `mtml models upload | list | show`: the model registry from the command line.
//!
//! An upload is validated before anything is stored: the file must load in ONNX Runtime (so a
//! truncated file or something that is not ONNX is refused with the loader's reason), its input
//! must take the features of the feature set it declares, and that must be the set this build
//! computes; a mismatch is refused with the difference spelled out. With `--sha256` the file's
//! checksum must match the one given (a copy damaged on the way is refused).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use mtml_feature_store::FEATURE_SET;
use mtml_inference::{Model, OnnxRuntime};
use mtml_registry::{NewVersion, Registry, VersionRow, sha256_hex};

/// What to upload.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    /// The ONNX file.
    pub file: &'a Path,
    /// Name to register it under.
    pub name: &'a str,
    /// Training metrics, a JSON object.
    pub metadata: Option<&'a Path>,
    /// The checksum the file must have.
    pub sha256: Option<&'a str>,
}

/// Checks a model against the feature set this build computes; the error spells out the
/// difference. With `require_declared`, a model that declares no feature set is refused too.
/// The one check for every model mtml takes: the configured live model and uploads alike.
pub fn check_against_feature_set(model: &Model, require_declared: bool) -> Result<(), String> {
    let signature = model.signature();
    let expected = FEATURE_SET.id();
    let names: Vec<&str> = FEATURE_SET.features.iter().map(|f| f.name).collect();
    match &signature.feature_set {
        Some(declared) if *declared != expected => {
            return Err(format!(
                "model {} declares feature set {declared}, but this build computes {expected} ({} features: {})",
                model.name(),
                names.len(),
                names.join(", ")
            ));
        }
        None if require_declared => {
            return Err(format!(
                "model {} declares no feature set (metadata_props[\"feature_set\"]); this build computes {expected}",
                model.name()
            ));
        }
        _ => {}
    }
    if signature.features != names.len() {
        let difference = if signature.features < names.len() {
            format!("missing {}", names[signature.features..].join(", "))
        } else {
            format!("{} more than the set has", signature.features - names.len())
        };
        return Err(format!(
            "model {} input {} takes {} features, but feature set {expected} has {} ({difference})",
            model.name(),
            signature.input,
            signature.features,
            names.len()
        ));
    }
    Ok(())
}

/// Validates and registers a model file; returns what was registered.
pub async fn upload(runtime: &OnnxRuntime, registry: &Registry, upload: Upload<'_>) -> anyhow::Result<VersionRow> {
    let bytes = std::fs::read(upload.file).with_context(|| format!("reading {}", upload.file.display()))?;
    let sha256 = sha256_hex(&bytes);
    if let Some(expected) = upload.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        anyhow::bail!("{}: sha256 is {sha256}, not the {expected} given; refusing a damaged copy", upload.file.display());
    }
    let model = Model::from_bytes(runtime, upload.name, &bytes)
        .with_context(|| format!("{} is not a model mtml can serve", upload.file.display()))?;
    check_against_feature_set(&model, true).map_err(|reason| anyhow::anyhow!("refused: {reason}"))?;
    let metrics = match upload.metadata {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            anyhow::ensure!(value.is_object(), "{}: metadata must be a JSON object", path.display());
            value.to_string()
        }
        None => "{}".to_owned(),
    };
    let signature = model.signature();
    let uploaded_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let new = NewVersion {
        name: upload.name.to_owned(),
        input_name: signature.input.clone(),
        features: i64::try_from(signature.features).unwrap_or(i64::MAX),
        output_name: signature.probabilities.clone(),
        feature_set: signature.feature_set.clone().unwrap_or_default(),
        metrics,
        uploaded_by: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        uploaded_ms: i64::try_from(uploaded_ms).unwrap_or(i64::MAX),
        onnx: bytes,
    };
    Ok(registry.register(&new).await?)
}

/// The registry as a table.
pub fn list_table(rows: &[VersionRow]) -> String {
    let mut out = String::from("name                 version  state        feature set  size      sha256\n");
    for row in rows {
        let _ = writeln!(
            out,
            "{:<20} {:>7}  {:<12} {:<12} {:>8}  {}",
            row.name,
            row.version,
            row.state,
            row.feature_set,
            row.size_bytes,
            &row.sha256[..16.min(row.sha256.len())]
        );
    }
    let _ = writeln!(out, "{} versions", rows.len());
    out
}

/// One version in full.
pub fn show_text(row: &VersionRow) -> String {
    format!(
        "{}:{}\n  state        {}\n  sha256       {}\n  size         {} bytes\n  input        {} (FP32 [batch, {}])\n  output       {} (FP32 [batch, 2])\n  feature set  {}\n  metrics      {}\n  uploaded     by {} at {} ms\n",
        row.name,
        row.version,
        row.state,
        row.sha256,
        row.size_bytes,
        row.input_name,
        row.features,
        row.output_name,
        row.feature_set,
        row.metrics,
        row.uploaded_by,
        row.uploaded_ms
    )
}

/// Parses `NAME[:VERSION]`.
pub fn parse_spec(spec: &str) -> anyhow::Result<(&str, Option<i64>)> {
    match spec.rsplit_once(':') {
        Some((name, version)) => {
            let version = version.parse().with_context(|| format!("{spec:?}: the version after ':' must be a number"))?;
            Ok((name, Some(version)))
        }
        None => Ok((spec, None)),
    }
}

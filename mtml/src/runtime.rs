//! The models of a configuration: ONNX Runtime, the live model (configured, embedded or the
//! registry's champion and challenger), and the model server of the Open Inference Protocol.

use std::sync::Arc;

use anyhow::Context as _;
use mtml_inference::{Model, ModelRepository, ModelServer, OnnxRuntime};
use mtml_registry::Registry;
use mtml_rollout::{Models, Serving, Slot, build_models, check_against_feature_set};

use crate::config::Config;

/// The model built into the binary: trained by `cargo xtask train` on the shared EURUSD ticks
/// (see models/README.md). Used when no model path is configured.
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../../models/fx-direction-v1.onnx");

/// Loads ONNX Runtime from `runtime.onnxruntime_lib`, or from where `cargo xtask setup` puts it
/// (see [`mtml_inference::library_candidates`]).
pub fn load_runtime(config: &Config) -> anyhow::Result<OnnxRuntime> {
    let library = mtml_inference::locate_library(config.runtime.onnxruntime_lib.as_deref())?;
    Ok(OnnxRuntime::load(&library)?)
}

/// Loads the configured model (or the embedded one) and checks it takes the features this build
/// computes.
pub fn load_model(runtime: &OnnxRuntime, config: &Config) -> anyhow::Result<Model> {
    let name = &config.model.name;
    let model = match &config.model.path {
        Some(path) => Model::load(runtime, name, path)?,
        None => Model::from_bytes(runtime, name, EMBEDDED_MODEL)?,
    };
    // A configured model may leave its feature set undeclared (models trained elsewhere); uploads
    // to the registry may not.
    check_against_feature_set(&model, false)?;
    Ok(model)
}

/// The models the pipeline starts with, what is served from the registry, and the registry
/// champion's version and bytes for the protocol's model server.
pub struct StartingModels {
    /// Champion and challenger for the pipeline.
    pub models: Models,
    /// The registry revision in force.
    pub serving: Serving,
    /// The registry champion, if the models come from the registry.
    pub registry_champion: Option<(i64, Vec<u8>)>,
}

/// The models the pipeline starts with: with `model.from_registry`, the registry's champion and
/// challenger of `model.name`; otherwise, or before anything is promoted, the configured or
/// embedded model alone. Loading runs on a blocking thread.
pub async fn starting_models(runtime: &OnnxRuntime, config: &Config, registry: Option<&Registry>) -> anyhow::Result<StartingModels> {
    let configured = || -> anyhow::Result<StartingModels> {
        let source = if config.model.path.is_some() { "file" } else { "embedded" };
        let slot = Slot { label: format!("{}:{source}", config.model.name), born_ms: None, model: load_model(runtime, config)? };
        Ok(StartingModels { models: Models::champion_only(slot), serving: Serving::default(), registry_champion: None })
    };
    let Some(registry) = registry else { return configured() };
    let name = &config.model.name;
    let state = registry.rollout_state(name).await?;
    let Some(champion) = state.champion else {
        tracing::warn!(model = %name, "model.from_registry: nothing promoted yet; the configured model serves until a version is promoted (mtml models promote NAME:VERSION)");
        return configured();
    };
    let champion_row = registry.show(name, Some(champion)).await?;
    let champion_bytes = registry.onnx(name, champion).await?;
    let challenger = match &state.challenger {
        Some(c) => Some((registry.show(name, Some(c.version)).await?, registry.onnx(name, c.version).await?)),
        None => None,
    };
    // At start there is nothing older to keep serving: a champion that does not load stops the
    // start, rather than trading on a model nobody chose.
    let (runtime, loading_state) = (runtime.clone(), state.clone());
    let (models, champion_bytes) = tokio::task::spawn_blocking(move || {
        let challenger = challenger.as_ref().map(|(r, b)| (r, b.as_slice()));
        let models = build_models(&runtime, &loading_state, (&champion_row, &champion_bytes), challenger);
        models.map(|models| (models, champion_bytes))
    })
    .await?
    .with_context(|| format!("starting with {name}'s registry rollout (revision {})", state.revision))?;
    let serving = Serving { revision: state.revision, error: None, failed_revision: 0 };
    Ok(StartingModels { models, serving, registry_champion: Some((champion, champion_bytes)) })
}

/// The models the Open Inference Protocol serves: the live model under its name, and the
/// configured repository folder.
pub fn model_server(runtime: &OnnxRuntime, config: &Config) -> anyhow::Result<ModelServer> {
    let live: Arc<[u8]> = match &config.model.path {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?.into(),
        None => Arc::from(EMBEDDED_MODEL),
    };
    let repository = ModelRepository {
        in_memory: [(config.model.name.clone(), live)].into_iter().collect(),
        dir: config.model.repository.clone(),
    };
    Ok(ModelServer::new(runtime.clone(), repository, config.model.workers).with_max_batch(config.model.max_batch))
}

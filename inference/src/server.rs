//! Serving loaded models to many callers: a pool of worker threads per model version, hot swap.
//!
//! Each loaded model version gets `workers` threads, each owning its own ONNX Runtime session
//! (`Session::run` takes `&mut self`), created and warmed up before the version takes traffic.
//! Requests go to the workers round robin over channels and are answered on a oneshot, so the
//! async runtime never runs a model. Loading a model again builds the new version completely
//! beside the old one and then swaps it in: requests already in flight finish on the version
//! they started on, none is dropped, none sees a half-loaded model, and a version that fails to
//! load leaves the old one serving.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::{InferenceError, Model, ModelSignature, OnnxRuntime};

/// Where model bytes come from, by name.
#[derive(Debug, Clone, Default)]
pub struct ModelRepository {
    /// Models held in memory (built into the binary, or the configured live model), by name.
    pub in_memory: BTreeMap<String, Arc<[u8]>>,
    /// A folder of `NAME.onnx` files, if configured.
    pub dir: Option<PathBuf>,
}

impl ModelRepository {
    /// Every model name the repository can load, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.in_memory.keys().cloned().collect();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "onnx")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The model's bytes: a file in the folder wins over the in-memory model of the same name.
    pub fn bytes(&self, name: &str) -> Result<Vec<u8>, ServeError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{name}.onnx"));
            if path.is_file() {
                return std::fs::read(&path)
                    .map_err(|e| ServeError::Load { model: name.to_owned(), reason: format!("{}: {e}", path.display()) });
            }
        }
        self.in_memory.get(name).map(|b| b.to_vec()).ok_or_else(|| ServeError::UnknownModel(name.to_owned()))
    }
}

/// Why a request to the model server failed. Messages say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No model of that name is loaded.
    #[error("model {0:?} is not loaded")]
    NotLoaded(String),
    /// The repository has no model of that name.
    #[error("model {0:?} is not in the repository")]
    UnknownModel(String),
    /// A version other than the loaded one was asked for.
    #[error("model {model:?} has version {loaded} loaded, not {asked:?}")]
    UnknownVersion {
        /// Model.
        model: String,
        /// The loaded version.
        loaded: String,
        /// The version asked for.
        asked: String,
    },
    /// The model failed to load; whatever was serving before still is.
    #[error("model {model:?} failed to load: {reason}")]
    Load {
        /// Model.
        model: String,
        /// Why.
        reason: String,
    },
    /// The model refused the input.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The model's workers stopped (the process is shutting down).
    #[error("model {0:?} is shutting down")]
    Stopped(String),
}

/// Counters of one model version, as the statistics extension reports them.
#[derive(Debug, Default)]
pub struct ModelStats {
    /// Requests answered.
    pub success_count: AtomicU64,
    /// Time spent on them, queueing included, ns.
    pub success_ns: AtomicU64,
    /// Requests that failed.
    pub fail_count: AtomicU64,
    /// Time spent on those, ns.
    pub fail_ns: AtomicU64,
    /// Time in ONNX Runtime, ns.
    pub compute_ns: AtomicU64,
    /// Rows inferred (a batch of 8 counts 8).
    pub inference_count: AtomicU64,
    /// Model executions (a batch counts 1).
    pub execution_count: AtomicU64,
    /// When the last request finished, UTC epoch ms (0 for never).
    pub last_inference_ms: AtomicU64,
}

struct Job {
    input: Vec<f32>,
    batch: usize,
    reply: oneshot::Sender<(Result<Vec<f32>, InferenceError>, u64)>,
}

/// One model version taking traffic.
pub struct LoadedModel {
    name: String,
    version: String,
    signature: ModelSignature,
    workers: Vec<std::sync::mpsc::Sender<Job>>,
    next: AtomicUsize,
    /// Counters.
    pub stats: ModelStats,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl LoadedModel {
    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Version: the load generation (1 for the first load, 2 after a reload...).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Input and output.
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Class probabilities, `[batch, 2]` row-major, for `batch` feature rows.
    pub async fn infer(&self, input: Vec<f32>, batch: usize) -> Result<Vec<f32>, ServeError> {
        let start = Instant::now();
        let (reply, answer) = oneshot::channel();
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let stopped = || ServeError::Stopped(self.name.clone());
        self.workers[worker].send(Job { input, batch, reply }).map_err(|_| stopped())?;
        let (result, compute_ns) = answer.await.map_err(|_| stopped())?;
        let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let stats = &self.stats;
        match &result {
            Ok(_) => {
                stats.success_count.fetch_add(1, Ordering::Relaxed);
                stats.success_ns.fetch_add(elapsed, Ordering::Relaxed);
                stats.compute_ns.fetch_add(compute_ns, Ordering::Relaxed);
                stats.inference_count.fetch_add(batch as u64, Ordering::Relaxed);
                stats.execution_count.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.fail_count.fetch_add(1, Ordering::Relaxed);
                stats.fail_ns.fetch_add(elapsed, Ordering::Relaxed);
            }
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        stats.last_inference_ms.store(now_ms, Ordering::Relaxed);
        Ok(result?)
    }
}

/// The state of a model in the repository, as RepositoryIndex reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIndexEntry {
    /// Name.
    pub name: String,
    /// Loaded version, empty if not loaded.
    pub version: String,
    /// `READY`, `UNAVAILABLE` (not loaded) or `LOAD_FAILED`.
    pub state: String,
    /// Why not ready, if not.
    pub reason: String,
}

/// The models this process serves.
pub struct ModelServer {
    runtime: OnnxRuntime,
    repository: ModelRepository,
    workers: usize,
    loaded: RwLock<HashMap<String, Arc<LoadedModel>>>,
    generations: RwLock<HashMap<String, u64>>,
    failures: RwLock<HashMap<String, String>>,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer").field("repository", &self.repository).field("workers", &self.workers).finish()
    }
}

impl ModelServer {
    /// A server loading from `repository`, with `workers` sessions per model version.
    pub fn new(runtime: OnnxRuntime, repository: ModelRepository, workers: usize) -> Self {
        Self {
            runtime,
            repository,
            workers: workers.max(1),
            loaded: RwLock::default(),
            generations: RwLock::default(),
            failures: RwLock::default(),
        }
    }

    /// The loaded version of `name` (any version if `version` is empty).
    pub fn get(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, ServeError> {
        let model = self.loaded.read().get(name).cloned().ok_or_else(|| ServeError::NotLoaded(name.to_owned()))?;
        if !version.is_empty() && version != model.version {
            return Err(ServeError::UnknownVersion {
                model: name.to_owned(),
                loaded: model.version.clone(),
                asked: version.to_owned(),
            });
        }
        Ok(model)
    }

    /// Loads (or reloads) `name` from the repository: every worker session is created and warmed
    /// up, then the new version replaces the old one at once. Blocking: call it from
    /// `spawn_blocking`. On failure the old version keeps serving and the error is kept for the
    /// index.
    pub fn load(&self, name: &str) -> Result<Arc<LoadedModel>, ServeError> {
        let result = self.build(name);
        match &result {
            Ok(model) => {
                self.failures.write().remove(name);
                self.loaded.write().insert(name.to_owned(), Arc::clone(model));
                tracing::info!(model = %name, version = %model.version, workers = self.workers, "model loaded");
            }
            Err(error) => {
                self.failures.write().insert(name.to_owned(), error.to_string());
                tracing::warn!(model = %name, %error, "model failed to load; the previous version, if any, keeps serving");
            }
        }
        result
    }

    fn build(&self, name: &str) -> Result<Arc<LoadedModel>, ServeError> {
        let bytes = self.repository.bytes(name)?;
        let load_error = |e: InferenceError| ServeError::Load { model: name.to_owned(), reason: e.to_string() };
        let mut sessions = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            sessions.push(Model::from_bytes(&self.runtime, name, &bytes).map_err(load_error)?);
        }
        let signature = sessions[0].signature().clone();
        let generation = {
            let mut generations = self.generations.write();
            let g = generations.entry(name.to_owned()).or_default();
            *g += 1;
            *g
        };
        let mut workers = Vec::with_capacity(sessions.len());
        for (i, mut session) in sessions.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(format!("mtml-infer-{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let start = Instant::now();
                        let result = session.infer(&job.input, job.batch);
                        let compute = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        let _ = job.reply.send((result, compute));
                    }
                })
                .map_err(|e| ServeError::Load { model: name.to_owned(), reason: format!("cannot start a worker: {e}") })?;
            workers.push(tx);
        }
        Ok(Arc::new(LoadedModel {
            name: name.to_owned(),
            version: generation.to_string(),
            signature,
            workers,
            next: AtomicUsize::new(0),
            stats: ModelStats::default(),
        }))
    }

    /// Stops serving `name`: new requests are refused; requests in flight finish.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        self.loaded.write().remove(name).map(|_| ()).ok_or_else(|| ServeError::NotLoaded(name.to_owned()))
    }

    /// Every loaded model version.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        let mut models: Vec<_> = self.loaded.read().values().cloned().collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    /// Every model of the repository and every loaded one, with its state.
    pub fn index(&self) -> Vec<ModelIndexEntry> {
        let loaded = self.loaded.read();
        let failures = self.failures.read();
        let mut names = self.repository.names();
        names.extend(loaded.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let version = loaded.get(&name).map(|m| m.version.clone()).unwrap_or_default();
                let (state, reason) = match (loaded.contains_key(&name), failures.get(&name)) {
                    (true, _) => ("READY", String::new()),
                    (false, Some(reason)) => ("LOAD_FAILED", reason.clone()),
                    (false, None) => ("UNAVAILABLE", "not loaded".to_owned()),
                };
                ModelIndexEntry { name, version, state: state.to_owned(), reason }
            })
            .collect()
    }
}

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
    reply: oneshot::Sender<Outcome>,
}

/// A job's answer, the time its execution took, and whether it counts that execution (the
/// first job of a micro-batch does; the others rode along).
type Outcome = (Result<Vec<f32>, InferenceError>, u64, bool);

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs queued jobs: alone if one, otherwise the well-formed ones as one batch (a malformed
/// one runs alone, so that its error is its own).
fn run_jobs(session: &mut Model, mut jobs: Vec<Job>) {
    if jobs.len() == 1 {
        let job = jobs.remove(0);
        let start = Instant::now();
        let result = session.infer(&job.input, job.batch);
        let _ = job.reply.send((result, elapsed_ns(start), true));
        return;
    }
    let features = session.signature().features;
    let (good, bad): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| j.batch > 0 && j.input.len() == j.batch * features && j.input.iter().all(|v| v.is_finite()));
    for job in bad {
        let start = Instant::now();
        let result = session.infer(&job.input, job.batch);
        let _ = job.reply.send((result, elapsed_ns(start), true));
    }
    if good.is_empty() {
        return;
    }
    let rows: usize = good.iter().map(|j| j.batch).sum();
    let mut input = Vec::with_capacity(rows * features);
    for job in &good {
        input.extend_from_slice(&job.input);
    }
    let start = Instant::now();
    let result = session.infer(&input, rows);
    let compute = elapsed_ns(start);
    let mut offset = 0;
    for (k, job) in good.into_iter().enumerate() {
        let answer = match &result {
            Ok(probabilities) => Ok(probabilities[offset * 2..(offset + job.batch) * 2].to_vec()),
            Err(error) => Err(InferenceError::Run(error.to_string())),
        };
        offset += job.batch;
        let _ = job.reply.send((answer, compute, k == 0));
    }
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

    /// Version: the registry version when installed from the registry, otherwise the load
    /// generation (1 for the first load, 2 after a reload...).
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
        let (result, compute_ns, executed) = answer.await.map_err(|_| stopped())?;
        let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let stats = &self.stats;
        match &result {
            Ok(_) => {
                stats.success_count.fetch_add(1, Ordering::Relaxed);
                stats.success_ns.fetch_add(elapsed, Ordering::Relaxed);
                stats.inference_count.fetch_add(batch as u64, Ordering::Relaxed);
                if executed {
                    stats.compute_ns.fetch_add(compute_ns, Ordering::Relaxed);
                    stats.execution_count.fetch_add(1, Ordering::Relaxed);
                }
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
    max_batch: usize,
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
            max_batch: 1,
            loaded: RwLock::default(),
            generations: RwLock::default(),
            failures: RwLock::default(),
        }
    }

    /// Lets each worker run up to `rows` queued rows as one execution (micro-batching); 1, the
    /// default, runs every request alone. Applies to versions loaded afterwards.
    pub fn with_max_batch(mut self, rows: usize) -> Self {
        self.max_batch = rows.max(1);
        self
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
        let result = self.repository.bytes(name).and_then(|bytes| {
            let generation = {
                let mut generations = self.generations.write();
                let g = generations.entry(name.to_owned()).or_default();
                *g += 1;
                *g
            };
            self.build(name, &generation.to_string(), &bytes)
        });
        self.swap_in(name, result)
    }

    /// Loads `bytes` as version `version` of `name` (a registry version), the same way as
    /// [`ModelServer::load`]: built completely, then swapped in; on failure the old version
    /// keeps serving. Blocking.
    pub fn install(&self, name: &str, version: &str, bytes: &[u8]) -> Result<Arc<LoadedModel>, ServeError> {
        let result = self.build(name, version, bytes);
        self.swap_in(name, result)
    }

    fn swap_in(&self, name: &str, result: Result<Arc<LoadedModel>, ServeError>) -> Result<Arc<LoadedModel>, ServeError> {
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

    fn build(&self, name: &str, version: &str, bytes: &[u8]) -> Result<Arc<LoadedModel>, ServeError> {
        let load_error = |e: InferenceError| ServeError::Load { model: name.to_owned(), reason: e.to_string() };
        let mut sessions = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            sessions.push(Model::from_bytes(&self.runtime, name, bytes).map_err(load_error)?);
        }
        let signature = sessions[0].signature().clone();
        let mut workers = Vec::with_capacity(sessions.len());
        for (i, mut session) in sessions.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let max_batch = self.max_batch;
            std::thread::Builder::new()
                .name(format!("mtml-infer-{name}-{i}"))
                .spawn(move || {
                    while let Ok(first) = rx.recv() {
                        let mut jobs = vec![first];
                        let mut rows = jobs[0].batch;
                        // Micro-batching: whatever is already queued, up to `max_batch` rows, runs
                        // as one execution. Nothing waits for company: an idle server runs each
                        // request alone at once.
                        while rows < max_batch {
                            match rx.try_recv() {
                                Ok(job) => {
                                    rows += job.batch;
                                    jobs.push(job);
                                }
                                Err(_) => break,
                            }
                        }
                        run_jobs(&mut session, jobs);
                    }
                })
                .map_err(|e| ServeError::Load { model: name.to_owned(), reason: format!("cannot start a worker: {e}") })?;
            workers.push(tx);
        }
        Ok(Arc::new(LoadedModel {
            name: name.to_owned(),
            version: version.to_owned(),
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

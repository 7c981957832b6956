//! Following a model's rollout in the registry and applying each change to this instance.

use std::sync::Arc;
use std::time::Duration;

use mtml_core::clock::{Clock as _, SystemClock};
use mtml_inference::{ModelServer, OnnxRuntime};
use mtml_registry::{Registry, RolloutState};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::RolloutError;
use crate::comparison::ComparisonReport;
use crate::gate::{Gate, Verdict};
use crate::models::{Models, build_models};

/// The pipeline a follower feeds, as the follower needs it: put a model set in force between
/// two ticks, and read the comparison of the challenger on trial. The pipeline crate implements
/// it; this crate does not name the pipeline.
#[async_trait::async_trait]
pub trait ModelSetTarget: Send + Sync + std::fmt::Debug {
    /// Puts `models` in force; returns once they are.
    async fn set_models(&self, models: Models) -> Result<(), RolloutError>;
    /// Champion against challenger so far, if a challenger is on trial.
    async fn comparison(&self) -> Result<Option<ComparisonReport>, RolloutError>;
}

/// What an instance serves from the registry, as `RolloutStatus` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    /// The registry revision in force here (0 for the configured or embedded model).
    pub revision: i64,
    /// Why a later revision is not, if it failed to load.
    pub error: Option<String>,
    /// That revision (not tried again until the registry moves on).
    pub failed_revision: i64,
}

/// Follows a model's rollout in the registry: when its revision moves, loads the new champion
/// and challenger completely, then hands them to the pipeline (which swaps between two ticks)
/// and the champion to the model server. A version that fails to load leaves the old ones
/// serving, and the error is kept for `RolloutStatus` and logged.
#[derive(Debug)]
pub struct RolloutFollower {
    registry: Registry,
    runtime: OnnxRuntime,
    name: String,
    target: Arc<dyn ModelSetTarget>,
    server: Option<Arc<ModelServer>>,
    serving: Mutex<Serving>,
    wake: Notify,
    applying: tokio::sync::Mutex<()>,
    gate: Option<Gate>,
}

impl RolloutFollower {
    /// A follower of `name` in `registry`, feeding `target` (the pipeline) and, if given, the
    /// protocol's model server.
    pub fn new(registry: Registry, runtime: OnnxRuntime, name: String, target: Arc<dyn ModelSetTarget>, server: Option<Arc<ModelServer>>, serving: Serving) -> Self {
        Self { registry, runtime, name, target, server, serving: Mutex::new(serving), wake: Notify::new(), applying: tokio::sync::Mutex::new(()), gate: None }
    }

    /// Promotes or rolls back the challenger by itself when `gate` says so.
    pub fn with_gate(mut self, gate: Option<Gate>) -> Self {
        self.gate = gate;
        self
    }

    /// Judges the challenger served here by the gate, and acts on a verdict: promote or
    /// rollback in the registry (actor `gate`), then applies it. Returns the verdict.
    pub async fn apply_gate(&self) -> Result<Verdict, RolloutError> {
        let Some(gate) = self.gate else { return Ok(Verdict::Wait) };
        let state = self.registry.rollout_state(&self.name).await?;
        let Some(challenger) = &state.challenger else { return Ok(Verdict::Wait) };
        if self.serving().revision != state.revision {
            return Ok(Verdict::Wait);
        }
        let Some(report) = self.target.comparison().await? else { return Ok(Verdict::Wait) };
        if report.challenger.model != format!("{}:{}", self.name, challenger.version) {
            return Ok(Verdict::Wait);
        }
        let verdict = gate.judge(&report);
        let now = SystemClock.now_ms();
        match &verdict {
            Verdict::Wait => return Ok(verdict),
            Verdict::Promote(reason) => {
                tracing::warn!(model = %self.name, version = challenger.version, %reason, "gate: promoting the challenger");
                self.registry.promote_from(&state, challenger.version, "gate", now).await?;
            }
            Verdict::Rollback(reason) => {
                tracing::warn!(model = %self.name, version = challenger.version, %reason, "gate: rolling the challenger back");
                self.registry.rollback(&self.name, "gate", now).await?;
            }
        }
        self.sync().await?;
        Ok(verdict)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The model followed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is served now.
    pub fn serving(&self) -> Serving {
        self.serving.lock().clone()
    }

    /// Looks at the registry now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Applies the registry's rollout if it moved; returns the revision served afterwards.
    pub async fn sync(&self) -> Result<i64, RolloutError> {
        let _one_at_a_time = self.applying.lock().await;
        let state = self.registry.rollout_state(&self.name).await?;
        let Serving { revision: served, failed_revision, .. } = self.serving();
        if state.revision == served || state.revision == failed_revision || state.champion.is_none() {
            return Ok(served);
        }
        match self.apply(&state).await {
            Ok(()) => {
                *self.serving.lock() = Serving { revision: state.revision, error: None, failed_revision: 0 };
                let champion = state.champion.map_or_else(|| "none".to_owned(), |v| v.to_string());
                let challenger = state.challenger.as_ref().map_or_else(|| "none".to_owned(), |c| format!("{} on {}", c.version, c.route));
                tracing::info!(model = %self.name, revision = state.revision, %champion, %challenger, "rollout applied");
                Ok(state.revision)
            }
            Err(error) => {
                let error = RolloutError::NotApplied { revision: state.revision, source: Box::new(error) };
                let message = error.to_string();
                tracing::error!(model = %self.name, error = %message, "rollout change failed to load; the previous models keep serving");
                let mut serving = self.serving.lock();
                serving.error = Some(message.clone());
                serving.failed_revision = state.revision;
                drop(serving);
                Err(error)
            }
        }
    }

    async fn apply(&self, state: &RolloutState) -> Result<(), RolloutError> {
        let champion_version = state.champion.ok_or(RolloutError::NoChampion)?;
        let champion_row = self.registry.show(&self.name, Some(champion_version)).await?;
        let champion_bytes = self.registry.onnx(&self.name, champion_version).await?;
        let challenger = match &state.challenger {
            Some(c) => Some((self.registry.show(&self.name, Some(c.version)).await?, self.registry.onnx(&self.name, c.version).await?)),
            None => None,
        };
        let runtime = self.runtime.clone();
        let state_owned = state.clone();
        let server = self.server.clone();
        let name = self.name.clone();
        let models = tokio::task::spawn_blocking(move || -> Result<Models, RolloutError> {
            let models = build_models(
                &runtime,
                &state_owned,
                (&champion_row, &champion_bytes),
                challenger.as_ref().map(|(row, bytes)| (row, bytes.as_slice())),
            )?;
            // A change that keeps the champion (a rollout, a withdrawn challenger) leaves the
            // protocol's sessions of it as they are.
            if let Some(server) = server
                && server.get(&name, &champion_version.to_string()).is_err()
            {
                server.install(&name, &champion_version.to_string(), &champion_bytes)?;
            }
            Ok(models)
        })
        .await
        .map_err(|e| RolloutError::Task(e.to_string()))??;
        self.target.set_models(models).await
    }

    /// Polls every `every` (or when woken) until `shutdown`.
    pub fn spawn(self: Arc<Self>, every: Duration, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let span = tracing::info_span!("rollout_follower", model = %self.name);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                    () = self.wake.notified() => {}
                }
                // Failures are logged and kept in `serving`; the next poll tries again.
                let _ = self.sync().await;
                if let Err(error) = self.apply_gate().await {
                    tracing::error!(model = %self.name, %error, "gate could not act");
                }
            }
        }.instrument(span))
    }
}



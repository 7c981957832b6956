//! The composition root: bridge, tick transport, pipeline and gRPC API in one process.
//!
//! `mtml run` and `mtml replay` both start through [`App::start`], so the demo exercises exactly
//! the code a live deployment runs. Starting is a sequence of named steps, each in its own span
//! (`start{step=...}`), each building one part from its own settings: the models, the stores,
//! the tick transport, the bridge, recovery from the journal, the pipeline, and the gRPC API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use mtml_bridge::grpc::BridgeService;
use mtml_bridge::{Bridge, BridgeConfig, BridgeOutputs, BridgeStats, SymbolMapper};
use mtml_core::{ChainId, ChainLog, ExecutionEvent, OrderRequest, RecoveredOrder, Side, Symbol, Tick};
use mtml_decision::{DecisionConfig, DecisionEngine, Desk, Execution, Position, RiskEngine};
use mtml_inference::OnnxRuntime;
use mtml_ingestion::grpc::forward_ticks;
use mtml_journal::{Journal, OrderRow};
use mtml_pipeline::{PipelineBuilder, PipelineHandle, PipelineOutcome, PipelineProgress};
use mtml_registry::Registry;
use mtml_rollout::{CompareSettings, RolloutFollower};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::client::ServerUrl;
use crate::config::{Config, Transport};
use crate::remote::forward_orders;
use crate::runtime::{StartingModels, model_server, starting_models};
use crate::services::{self, ServiceParts};
use crate::stores::Stores;

/// A running mtml.
pub struct App {
    /// Where terminals connect, when the bridge runs in this process.
    pub bridge_addr: Option<SocketAddr>,
    /// Where the gRPC API listens, if it runs.
    pub grpc_addr: Option<SocketAddr>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// Spans and latencies of every chain.
    pub chain_log: Arc<ChainLog>,
    /// Pipeline progress.
    pub progress: Arc<PipelineProgress>,
    /// Bridge counters, when the bridge runs in this process.
    pub bridge_stats: Option<Arc<BridgeStats>>,
    /// The feature stores and their writers.
    pub stores: Stores,
    /// Follows the registry's rollout of the model, with `model.from_registry`.
    pub follower: Option<Arc<RolloutFollower>>,
    shutdown: CancellationToken,
    bridge_task: Option<JoinHandle<()>>,
    grpc_task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    forwarder_task: Option<JoinHandle<()>>,
    order_forwarder_task: Option<JoinHandle<()>>,
    follower_task: Option<JoinHandle<()>>,
    metrics_task: Option<JoinHandle<()>>,
    history: ChainHistory,
    telegram: Option<(mtml_telegram::Telegram, mtml_telegram::TelegramSettings)>,
    journal: Journal,
    notices: mtml_core::Notices,
    service: String,
    /// This instance's own gRPC API, with its own token (its Telegram console calls it).
    loopback: Option<ServerUrl>,
    handle: PipelineHandle,
    pipeline: std::thread::JoinHandle<PipelineOutcome>,
}

/// What to listen on.
pub struct Listeners {
    /// Terminals; `None` runs the pipeline alone (`mtml pipeline`): ticks come in through the
    /// Ingestion service and orders go to the bridge named by `pipeline.bridge`.
    pub bridge: Option<TcpListener>,
    /// The gRPC API; required when the transport is gRPC.
    pub grpc: Option<TcpListener>,
    /// The metrics and health endpoints over HTTP, if served.
    pub metrics: Option<TcpListener>,
}

/// Ticks from the bridge to the pipeline: one channel in process; over gRPC the tick forwarder
/// and the Ingestion service join two.
struct TickTransport {
    /// What the bridge writes.
    bridge: mpsc::Sender<Tick>,
    /// What the Ingestion service writes (the pipeline's inbox).
    ingestion: mpsc::Sender<Tick>,
    /// What the pipeline reads.
    pipeline: mpsc::Receiver<Tick>,
    forwarder: Option<JoinHandle<()>>,
}

/// The bridge and the way orders and execution events travel between it and the pipeline.
struct BridgeParts {
    /// `None` when the bridge is another process.
    bridge: Option<Bridge>,
    orders: Box<dyn mtml_core::OrderSink>,
    events: mpsc::Receiver<ExecutionEvent>,
    service: Option<BridgeService>,
    order_forwarder: Option<JoinHandle<()>>,
}

/// Spawns a task in a span of its own, named after the task.
pub(crate) fn spawn_named<F>(name: &'static str, future: F) -> JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.instrument(tracing::info_span!("task", name)))
}

impl App {
    /// Starts every service on the given listeners.
    pub async fn start(config: &Config, runtime: &OnnxRuntime, listeners: Listeners) -> anyhow::Result<Self> {
        let step = |name: &'static str| tracing::info_span!("start", step = name);
        let bridge_addr = listeners.bridge.as_ref().map(TcpListener::local_addr).transpose()?;
        let grpc_addr = listeners.grpc.as_ref().map(TcpListener::local_addr).transpose()?;
        let metrics_addr = listeners.metrics.as_ref().map(TcpListener::local_addr).transpose()?;
        if let Some(addr) = bridge_addr {
            config.check_bridge_exposure(addr)?;
        }
        // Who may call: the configured tokens, and one of this instance's own for its loopback
        // streams and its Telegram console.
        let mut tokens = config.tokens_for(&[("grpc.listen", grpc_addr), ("metrics.listen", metrics_addr)])?;
        let own_token = if tokens.is_empty() { String::new() } else { tokens.add_internal("internal", mtml_auth::Role::Admin) };
        let tls = crate::tls::server_tls(&config.tls)?;
        let terminal_tls = config.bridge.tls.then(|| crate::tls::terminal_tls(&config.tls)).transpose()?;
        let http_tls = crate::tls::http_tls(&config.tls)?;
        let registry = match config.model.from_registry {
            true => Some(open_registry(config, Access::ReadWrite).instrument(step("registry")).await?),
            false => None,
        };
        let starting = starting_models(runtime, config, registry.as_ref()).instrument(step("models")).await?;
        let stores = Stores::open(config).instrument(step("stores")).await?;
        let shutdown = CancellationToken::new();
        let telegram = match config.telegram_settings()? {
            Some(settings) => Some((mtml_telegram::Telegram::start(&settings)?, settings)),
            None => None,
        };
        let notices = telegram.as_ref().map_or_else(mtml_core::Notices::default, |(bot, _)| bot.notices());
        let registry = registry.map(|registry| registry.with_notices(notices.clone()));
        if notices.is_on() {
            spawn_named("store_notices", stores.watch().tell_outages(notices.clone(), shutdown.clone()));
        }
        let chain_log = Arc::new(ChainLog::default().with_sample(config.journal.chain_sample_basis_points));
        let progress = Arc::new(PipelineProgress::default());
        let loopback = grpc_addr.map(|addr| ServerUrl::of_listener(addr, tls.is_some()).with_client(&config.client)?.with_token(&own_token)).transpose()?;

        let here = listeners.bridge.is_some();
        let ticks = step("transport").in_scope(|| tick_transport(config, here, loopback.as_ref()))?;
        let bridge = step("bridge").in_scope(|| {
            start_bridge(config, here, ticks.bridge.clone(), Arc::clone(&chain_log), loopback.as_ref(), &shutdown, bridge_config(config, &notices, terminal_tls))
        })?;
        let (journal, execution) = recover_from_journal(config).instrument(step("journal")).await?;
        let guard = audited_guard(tokens, &journal);
        let service = if here { "mtml" } else { "pipeline" };
        let (history, journal_tx) = ChainHistory::start(config, Arc::clone(&chain_log), service, false, journal.clone())?;
        if config.journal.chain_retention_days > 0 && !config.journal.url.contains(":memory:") {
            let keep_ms = i64::try_from(config.journal.chain_retention_days).unwrap_or(i64::MAX / 86_400_000) * 86_400_000;
            let journal = open_journal(config, Access::ReadWrite).await?;
            forget_old_chains_once(&journal, keep_ms).instrument(step("chain_retention")).await;
            spawn_named("chain_retention", forget_old_chains(journal, keep_ms, shutdown.clone()));
        }

        let (handle, commands) = PipelineHandle::new();
        let StartingModels { models, serving, registry_champion } = starting;
        // With `model.from_registry`, the follower feeds the pipeline and, when there is one,
        // the protocol's model server.
        let follower_of = |server: Option<Arc<mtml_inference::ModelServer>>| {
            registry.as_ref().map(|registry| {
                let target = Arc::new(handle.clone());
                let follower = RolloutFollower::new(registry.clone(), runtime.clone(), config.model.name.clone(), target, server, serving.clone());
                Arc::new(follower.with_gate(config.model.gate))
            })
        };
        let (follower, grpc_task) = match listeners.grpc {
            Some(listener) => {
                let server = Arc::new(model_server(runtime, config)?);
                let loader = Arc::clone(&server);
                let live_name = config.model.name.clone();
                tokio::task::spawn_blocking(move || match registry_champion {
                    Some((version, bytes)) => loader.install(&live_name, &version.to_string(), &bytes),
                    None => loader.load(&live_name),
                })
                .instrument(step("model_server"))
                .await??;
                let follower = follower_of(Some(Arc::clone(&server)));
                let parts = ServiceParts {
                    config,
                    runtime,
                    registry: registry.as_ref(),
                    follower: follower.clone(),
                    pipeline: handle.clone(),
                    models: server,
                    stores: &stores,
                    ticks: ticks.ingestion.clone(),
                    bridge: bridge.service,
                    journal: journal.clone(),
                    guard: Arc::clone(&guard),
                    tls,
                };
                let router = services::router(parts).instrument(step("grpc")).await;
                let incoming = services::grpc_incoming(listener);
                let serve = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
                (follower, Some(spawn_named("grpc_server", serve)))
            }
            // Without a gRPC server the follower still follows the registry for the pipeline.
            None => (follower_of(None), None),
        };
        drop(ticks.ingestion);
        let follower_task = follower.clone().map(|f| f.spawn(config.model.registry_poll, shutdown.clone()));

        let drift = step("drift").in_scope(|| drift_monitor(config))?;
        let pipeline = step("pipeline").in_scope(|| {
            let builder = pipeline_builder(config, models, execution, bridge.orders)
                .online(stores.online_writer.clone())
                .history(stores.history_writer.clone())
                .journal(journal_tx)
                .chain_log(Arc::clone(&chain_log))
                .progress(Arc::clone(&progress))
                .notices(notices.clone())
                .market_time_fills(config.pipeline.market_time_fills);
            let builder = match drift {
                Some(monitor) => builder.drift(monitor, config.model.drift_threshold),
                None => builder,
            };
            builder
                .build()
                .spawn(ticks.pipeline, bridge.events, commands)
        })?;

        #[cfg(windows)]
        if let (Some(name), Some(pipe_bridge)) = (config.bridge.pipe_name.clone(), bridge.bridge.clone()) {
            let shutdown = shutdown.clone();
            spawn_named("named_pipe_server", async move {
                if let Err(error) = mtml_bridge::pipe::run_pipe(pipe_bridge, &name, shutdown).await {
                    tracing::error!(%error, pipe = %name, "named-pipe server failed");
                }
            });
        }
        let bridge_stats = bridge.bridge.as_ref().map(Bridge::stats);
        let metrics_task = listeners.metrics.map(|listener| {
            let sources = services::metrics::Sources {
                pipeline: Some((handle.clone(), stores.watch())),
                bridge: bridge_stats.clone(),
                chain_log: Arc::clone(&chain_log),
                otlp: history.otlp_stats.clone(),
                guard: Arc::clone(&guard),
            };
            spawn_named("metrics_server", services::metrics::serve(listener, http_tls.clone(), sources, shutdown.clone().cancelled_owned()))
        });
        let bridge_task = match (bridge.bridge, listeners.bridge) {
            (Some(bridge), Some(listener)) => Some(spawn_named("bridge", bridge.run(listener, shutdown.clone()))),
            _ => None,
        };
        let shown = |addr: Option<SocketAddr>| addr.map_or_else(|| "none".to_owned(), |addr| addr.to_string());
        let (terminals, grpc, metrics) = (shown(bridge_addr), shown(grpc_addr), shown(metrics_addr));
        tracing::info!(%terminals, %grpc, %metrics, transport = config.pipeline.transport.name(), "mtml started");
        let service = format!("mtml {}", if here { "run" } else { "pipeline" });
        let detail = format!("terminals {terminals}, gRPC {grpc}, metrics {metrics}");
        notices.emit(|| mtml_core::Notice::Service { service: service.clone(), state: "started".into(), detail });
        Ok(Self {
            bridge_addr,
            grpc_addr,
            metrics_addr,
            metrics_task,
            history,
            chain_log,
            progress,
            bridge_stats,
            stores,
            follower,
            shutdown,
            bridge_task,
            grpc_task,
            forwarder_task: ticks.forwarder,
            order_forwarder_task: bridge.order_forwarder,
            follower_task,
            handle,
            pipeline,
            telegram,
            journal,
            notices,
            service,
            loopback,
        })
    }

    /// Starts the Telegram console (commands) against `operations`, when a bot is configured.
    pub fn start_telegram_console(&mut self, operations: Arc<dyn mtml_telegram::Operations>) {
        if let Some((bot, settings)) = &mut self.telegram {
            bot.console(settings, operations);
        }
    }

    /// This instance's own gRPC API, presenting its own token; `None` without a gRPC listener.
    pub fn loopback(&self) -> Option<&ServerUrl> {
        self.loopback.as_ref()
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Ticks the pipeline has taken (accepted or refused).
    pub fn ticks_seen(&self) -> u64 {
        self.progress.ticks_seen.load(Ordering::Acquire)
    }

    /// Where operator commands for the pipeline go.
    pub fn pipeline(&self) -> PipelineHandle {
        self.handle.clone()
    }

    /// Orders awaiting their outcome.
    pub fn orders_in_flight(&self) -> u64 {
        self.progress.orders_in_flight.load(Ordering::Acquire)
    }

    /// Stops in order: the bridge (no new ticks), the tick transport, the gRPC API (its order
    /// stream ends with the shutdown), then the pipeline once its inbox is empty, then the order
    /// forwarder. Returns what the pipeline knew.
    pub async fn stop(self) -> anyhow::Result<PipelineOutcome> {
        self.stop_and_summarise(None).await
    }

    /// Stops like [`App::stop`]; with `summary`, once the journal has every fill, tells the
    /// run's summary (PnL, trades, hit rate, drawdown, Sharpe, the equity curve) under that
    /// title before the bot stops (a replay's end).
    pub async fn stop_and_summarise(self, summary: Option<String>) -> anyhow::Result<PipelineOutcome> {
        let service = self.service.clone();
        self.notices.emit(|| mtml_core::Notice::Service { service, state: "stopping".into(), detail: "asked to stop".into() });
        self.shutdown.cancel();
        if let Some(task) = self.follower_task {
            task.await.context("rollout follower task")?;
        }
        if let Some(task) = self.metrics_task {
            task.await.context("metrics server task")?;
        }
        if let Some(task) = self.bridge_task {
            task.await.context("bridge task")?;
        }
        if let Some(task) = self.forwarder_task {
            task.await.context("tick forwarder task")?;
        }
        if let Some(task) = self.grpc_task {
            task.await.context("gRPC task")?.context("gRPC server")?;
        }
        let pipeline = self.pipeline;
        let outcome = tokio::task::spawn_blocking(move || pipeline.join())
            .await?
            .map_err(|_| anyhow::anyhow!("pipeline thread panicked"))?;
        if let Some(task) = self.order_forwarder_task {
            task.await.context("order forwarder task")?;
        }
        // Every span is in, and the pipeline has gone with its journal sender: the chain history
        // writes its last chains and the journal writer drains and ends.
        self.history.finish().await?;
        self.stores.close().await;
        if let Some(title) = summary.filter(|_| self.notices.is_on()) {
            match self.journal.performance(i64::MIN, title).await {
                Ok(summary) => self.notices.emit(|| mtml_core::Notice::Summary(summary)),
                Err(error) => tracing::warn!(%error, "run summary could not be made"),
            }
        }
        if let Some((telegram, _)) = self.telegram {
            telegram.stop().await;
        }
        Ok(outcome)
    }

    /// Waits for ctrl-c (or SIGTERM), then stops.
    pub async fn run_until_signal(self) -> anyhow::Result<PipelineOutcome> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// Waits for ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The drift monitor of `model.feature_distribution`, if one is configured.
fn drift_monitor(config: &Config) -> anyhow::Result<Option<mtml_feature_store::DriftMonitor>> {
    let Some(path) = &config.model.feature_distribution else { return Ok(None) };
    let text = std::fs::read_to_string(path).with_context(|| format!("model.feature_distribution: reading {}", path.display()))?;
    let distribution = mtml_feature_store::FeatureDistribution::from_json(&text)
        .with_context(|| format!("model.feature_distribution: {}", path.display()))?;
    Ok(Some(mtml_feature_store::DriftMonitor::new(distribution, config.model.drift_window)))
}

/// The metrics listener of a configuration (`metrics.listen`), if it serves metrics.
pub async fn bind_metrics(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    match config.metrics.listen {
        Some(addr) => Ok(Some(TcpListener::bind(addr).await.with_context(|| format!("binding metrics to {addr}"))?)),
        None => Ok(None),
    }
}

/// The model registry of a configuration (`registry.url`).
pub async fn open_registry(config: &Config, access: Access) -> anyhow::Result<Registry> {
    let url = &config.registry.url;
    let registry = match access {
        Access::ReadWrite => Registry::open(url).await,
        Access::ReadOnly => Registry::open_existing(url).await,
    };
    registry.with_context(|| format!("opening the model registry at {}", mtml_core::text::redact_url(url)))
}

/// The journal of a configuration (`journal.url`).
pub async fn open_journal(config: &Config, access: Access) -> anyhow::Result<Journal> {
    let url = &config.journal.url;
    let journal = match access {
        Access::ReadWrite => Journal::open(url).await,
        Access::ReadOnly => Journal::open_existing(url).await,
    };
    journal.with_context(|| format!("opening the journal at {}", mtml_core::text::redact_url(url)))
}

/// How a command uses a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writes to it: created and migrated when new.
    ReadWrite,
    /// Only reads: a store that does not exist is an error, and nothing is created.
    ReadOnly,
}

fn tick_transport(config: &Config, bridge_here: bool, loopback: Option<&ServerUrl>) -> anyhow::Result<TickTransport> {
    let (ingestion, pipeline) = mpsc::channel(config.pipeline.channel_capacity);
    match config.pipeline.transport {
        // Without a bridge here, ticks come only through the Ingestion service.
        _ if !bridge_here => Ok(TickTransport { bridge: ingestion.clone(), ingestion, pipeline, forwarder: None }),
        Transport::InProcess => Ok(TickTransport { bridge: ingestion.clone(), ingestion, pipeline, forwarder: None }),
        Transport::Grpc => {
            let endpoint = loopback.context("the grpc transport needs a gRPC listener")?;
            let (bridge, from_bridge) = mpsc::channel(config.pipeline.channel_capacity);
            let forwarder = spawn_forwarder(endpoint, from_bridge)?;
            Ok(TickTransport { bridge, ingestion, pipeline, forwarder: Some(forwarder) })
        }
    }
}

/// The guard of a process's servers over `tokens`, every admin call (admitted or refused)
/// written to the journal's audit log without holding up the call.
pub(crate) fn audited_guard(tokens: mtml_auth::Tokens, journal: &Journal) -> Arc<mtml_auth::Guard> {
    let journal = journal.clone();
    mtml_auth::Guard::audited(
        tokens,
        Arc::new(move |call: mtml_auth::Audited| {
            let journal = journal.clone();
            let at_ms = mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock);
            let row = mtml_journal::AuditRow { at_ms, actor: call.actor, action: call.action, outcome: call.outcome, chain_id: call.chain_id };
            tracing::info!(actor = %row.actor, action = %row.action, outcome = %row.outcome, "admin call");
            spawn_named("audit", async move {
                if let Err(error) = journal.audit(&row).await {
                    tracing::error!(%error, action = %row.action, "the audit log could not be written");
                }
            });
        }),
    )
}

/// Forwards the bridge's ticks to the Ingestion service of `pipeline`, presenting its token.
pub(crate) fn spawn_forwarder(pipeline: &ServerUrl, ticks: mpsc::Receiver<Tick>) -> anyhow::Result<JoinHandle<()>> {
    let (endpoint, bearer) = (pipeline.endpoint()?, pipeline.bearer().clone());
    Ok(spawn_named("tick_forwarder", async move {
        match forward_ticks(endpoint, bearer, ticks).await {
            Ok(stats) => tracing::info!(?stats, "tick forwarder finished"),
            Err(error) => tracing::error!(%error, "tick forwarder failed"),
        }
    }))
}

/// The bridge's configuration.
pub(crate) fn bridge_config(config: &Config, notices: &mtml_core::Notices, tls: Option<mtml_bridge::TerminalTls>) -> BridgeConfig {
    BridgeConfig {
        notices: notices.clone(),
        tls,
        token: config.bridge.token.clone(),
        symbols: SymbolMapper::new(config.pipeline.symbols.clone(), config.bridge.symbol_map.clone().into_iter().collect()),
        heartbeat_interval: config.bridge.heartbeat,
        silence_timeout: config.bridge.silence_timeout,
        reconcile_every: config.bridge.reconcile_every,
        order_timeout: config.bridge.order_timeout,
        max_connections: config.bridge.max_connections,
        max_orders_in_flight: config.bridge.max_orders_in_flight,
        backpressure: config.bridge.backpressure,
        chain_prefix: config.bridge.chain_prefix,
        ..BridgeConfig::default()
    }
}

/// Orders to the `mtml.v1.Bridge` service at `endpoint`, and its execution events back.
fn orders_over_grpc(endpoint: ServerUrl) -> (Box<dyn mtml_core::OrderSink>, mpsc::Receiver<ExecutionEvent>, JoinHandle<()>) {
    let (orders_tx, orders_rx) = mpsc::unbounded_channel::<OrderRequest>();
    let (events_tx, events_rx) = mpsc::channel(4096);
    let order_forwarder = spawn_named("order_forwarder", async move {
        if let Err(error) = forward_orders(&endpoint, orders_rx, events_tx).await {
            tracing::error!(%error, "order forwarder failed");
        }
    });
    let orders = Box::new(move |order: OrderRequest| {
        if let Err(error) = orders_tx.send(order) {
            tracing::error!(chain_id = %error.0.chain_id, "order channel to the bridge closed; order not sent");
        }
    });
    (orders, events_rx, order_forwarder)
}

fn start_bridge(
    config: &Config,
    here: bool,
    ticks: mpsc::Sender<Tick>,
    chain_log: Arc<ChainLog>,
    loopback: Option<&ServerUrl>,
    shutdown: &CancellationToken,
    settings: BridgeConfig,
) -> anyhow::Result<BridgeParts> {
    if !here {
        let remote = config.pipeline.bridge.as_ref().context("a pipeline without a bridge needs pipeline.bridge, the bridge's gRPC URL")?;
        let (orders, events, order_forwarder) = orders_over_grpc(remote.clone().with_client(&config.client)?);
        return Ok(BridgeParts { bridge: None, orders, events, service: None, order_forwarder: Some(order_forwarder) });
    }
    let (bridge_events, bridge_events_rx) = mpsc::channel(4096);
    let bridge = Bridge::new(settings, BridgeOutputs { ticks, events: bridge_events }, chain_log);
    match config.pipeline.transport {
        Transport::InProcess => {
            let orders = Box::new(bridge.router());
            Ok(BridgeParts { bridge: Some(bridge), orders, events: bridge_events_rx, service: None, order_forwarder: None })
        }
        Transport::Grpc => {
            let endpoint = loopback.context("the grpc transport needs a gRPC listener")?.clone();
            let (orders, events, order_forwarder) = orders_over_grpc(endpoint);
            let service = BridgeService::new(bridge.router(), bridge_events_rx, shutdown.clone());
            Ok(BridgeParts { bridge: Some(bridge), orders, events, service: Some(service), order_forwarder: Some(order_forwarder) })
        }
    }
}

/// Chain history: every 500 ms (and once more when stopped), the chains that reached a fill, a
/// rejection or an error go to the journal whole, as one group each; the tick path never waits
/// for it.
async fn record_chains(
    chain_log: Arc<ChainLog>,
    service: &'static str,
    journal: mpsc::UnboundedSender<Vec<mtml_journal::Record>>,
    otlp: Option<mtml_telemetry::Exporter>,
    others: Option<Journal>,
    stop: CancellationToken,
) {
    let write = || {
        let recorded_ms = mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock);
        for (chain_id, spans) in chain_log.take_finished() {
            let rows = spans
                .iter()
                .map(|s| mtml_journal::SpanRow {
                    stage: s.stage.name().to_owned(),
                    service: service.to_owned(),
                    start_unix_ns: mtml_core::clock::unix_ns(s.start_ns),
                    duration_ns: s.duration_ns as i64,
                    outcome: s.outcome.text(),
                })
                .collect();
            let _ = journal.send(vec![mtml_journal::Record::Chain { chain_id: chain_id.to_string(), service: service.to_owned(), spans: rows, recorded_ms }]);
            if let Some(otlp) = &otlp {
                otlp.offer(chain_id, spans);
            }
        }
    };
    let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut seen_ms = mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                if let Some(history) = &others {
                    seen_ms = keep_what_others_kept(history, service, &chain_log, seen_ms).await;
                }
                write();
            }
        }
    }
    if let Some(history) = &others {
        keep_what_others_kept(history, service, &chain_log, seen_ms).await;
    }
    write();
}

/// A bridge in its own process cannot know which of its ticks the pipeline refused or failed:
/// it adds its part to the chains other processes wrote since `after_ms`; returns the new mark.
async fn keep_what_others_kept(history: &Journal, service: &str, chain_log: &ChainLog, after_ms: i64) -> i64 {
    match history.chains_recorded_by_others(after_ms, service).await {
        Ok(chains) => {
            for (id, _) in &chains {
                if let Ok(chain) = id.parse() {
                    chain_log.keep(chain);
                }
            }
            chains.iter().map(|(_, recorded_ms)| *recorded_ms).max().unwrap_or(after_ms).max(after_ms)
        }
        Err(error) => {
            tracing::warn!(%error, "reading the chains other processes kept; retrying");
            after_ms
        }
    }
}

/// The OTLP exporter of `[otlp]`, if configured, exporting as `service`.
fn otlp_exporter(config: &Config, service: &str) -> anyhow::Result<Option<(mtml_telemetry::Exporter, JoinHandle<()>)>> {
    let Some(endpoint) = &config.otlp.endpoint else { return Ok(None) };
    let exporter = mtml_telemetry::Exporter::spawn(endpoint.as_str(), service).with_context(|| format!("otlp.endpoint {}", endpoint.as_str()))?;
    tracing::info!(endpoint = endpoint.as_str(), service, "exporting chains over OTLP");
    Ok(Some(exporter))
}

/// The chain history of a process: its journal writer, the task that hands it finished chains
/// (and the OTLP exporter, when configured); started the same way by every kind of process.
pub(crate) struct ChainHistory {
    /// The OTLP exporter's counters, when chains are exported.
    pub(crate) otlp_stats: Option<Arc<mtml_telemetry::ExportStats>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    otlp_task: Option<JoinHandle<()>>,
    journal_task: JoinHandle<u64>,
}

impl ChainHistory {
    /// Starts writing `journal` (what the returned sender carries, and `chain_log`'s finished
    /// chains as the process `service`); with `complete_others` (a bridge on its own), also this
    /// process's part of the chains other processes kept.
    pub(crate) fn start(
        config: &Config,
        chain_log: Arc<ChainLog>,
        service: &'static str,
        complete_others: bool,
        journal: Journal,
    ) -> anyhow::Result<(Self, mpsc::UnboundedSender<Vec<mtml_journal::Record>>)> {
        let (journal_tx, journal_rx) = mpsc::unbounded_channel();
        let others = complete_others.then(|| journal.clone());
        let journal_task = mtml_journal::spawn_writer(journal, journal_rx);
        let (otlp, otlp_task) = otlp_exporter(config, service)?.unzip();
        let otlp_stats = otlp.as_ref().map(mtml_telemetry::Exporter::stats);
        let stop = CancellationToken::new();
        let task = spawn_named("chain_history", record_chains(chain_log, service, journal_tx.clone(), otlp, others, stop.clone()));
        Ok((Self { otlp_stats, stop, task, otlp_task, journal_task }, journal_tx))
    }

    /// Once every span is in: writes the last chains, exports what it can, and lets go of the
    /// journal once every other sender has too.
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("chain history task")?;
        if let Some(task) = self.otlp_task {
            task.await.context("OTLP exporter task")?;
        }
        let written = self.journal_task.await.context("journal writer task")?;
        tracing::info!(records = written, "journal flushed");
        Ok(())
    }
}

/// Chain history retention: chains recorded longer than `keep_ms` ago leave the history.
async fn forget_old_chains_once(journal: &Journal, keep_ms: i64) {
    let before = mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock) - keep_ms;
    match journal.forget_chains_before(before).await {
        Ok(0) => {}
        Ok(spans) => tracing::info!(spans, "chain history older than the retention forgotten"),
        Err(error) => tracing::warn!(%error, "chain history retention failed; tried again in an hour"),
    }
}

/// The same every hour until `stop`.
async fn forget_old_chains(journal: Journal, keep_ms: i64, stop: CancellationToken) {
    let hour = std::time::Duration::from_secs(3_600);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => forget_old_chains_once(&journal, keep_ms).await,
        }
    }
    journal.close().await;
}

/// Opens the journal and recovers from it: positions come back, and orders it has open go back
/// in flight in execution with their outcome unknown, settled by the first books of an account
/// trading their symbol; they are never resent.
async fn recover_from_journal(config: &Config) -> anyhow::Result<(Journal, Execution)> {
    let journal = open_journal(config, Access::ReadWrite).await?;
    let mut execution = Execution::new(&format!("m{:x}", session_salt()));
    let positions = journal.positions().await?;
    if !positions.is_empty() {
        tracing::info!(positions = positions.len(), "positions recovered from the journal");
    }
    execution.restore_positions(positions.into_iter().map(|row| {
        let position = Position { lots: row.lots, average_price: row.average_price, realized_pnl: row.realized_pnl };
        (Symbol::new(&row.symbol), position)
    }));
    let open_orders = journal.orders(true).await?;
    if !open_orders.is_empty() {
        tracing::warn!(orders = open_orders.len(), "orders left open by the last run; never resent, settled from the terminal's next snapshot");
    }
    let recovered = open_orders.iter().map(recovered_order).collect::<anyhow::Result<Vec<_>>>()?;
    execution.restore_orders(&recovered);
    Ok((journal, execution))
}

/// A pipeline of `models` with the configuration's ingestion, decision, risk and comparison
/// settings, its orders to `orders`; stores, journal, notices and progress are the caller's.
pub(crate) fn pipeline_builder(config: &Config, models: mtml_rollout::Models, execution: Execution, orders: Box<dyn mtml_core::OrderSink>) -> PipelineBuilder {
    PipelineBuilder::new(config.symbols(), models, desk(config, execution), orders)
        .backwards_tolerance_ms(config.pipeline.backwards_tolerance_ms)
        .quote_band(config.pipeline.quote_band)
        .wider_bars(config.wider_bar_widths_ms())
        .compare(CompareSettings {
            horizon_ms: config.model.compare_horizon_ms,
            buy_above: config.decision.buy_above,
            sell_below: config.decision.sell_below,
        })
        .slow_order(config.pipeline.slow_order)
}

/// Decision, risk and execution from their settings.
fn desk(config: &Config, execution: Execution) -> Desk {
    let decision = DecisionEngine::new(DecisionConfig {
        buy_above: config.decision.buy_above,
        sell_below: config.decision.sell_below,
        min_agreeing: 1,
        sizing: config.decision.sizing,
        max_lots: config.risk.limits.max_position_lots,
        cooldown_ms: i64::try_from(config.decision.cooldown.as_millis()).unwrap_or(i64::MAX),
    });
    let risk = RiskEngine::new(config.risk_limits());
    Desk::new(decision, risk, execution, config.risk.starting_equity)
}

/// A journal's open order, for execution and the bridge.
fn recovered_order(row: &OrderRow) -> anyhow::Result<RecoveredOrder> {
    let chain_id: ChainId = row
        .chain_id
        .parse()
        .with_context(|| format!("journal order {} has chain id {:?}", row.client_order_id, row.chain_id))?;
    let side = Side::from_name(&row.side)
        .with_context(|| format!("journal order {} has side {:?}", row.client_order_id, row.side))?;
    Ok(RecoveredOrder {
        client_order_id: row.client_order_id.clone(),
        chain_id,
        symbol: Symbol::new(&row.symbol),
        side,
        volume: row.volume,
        filled: row.filled,
        decision_price: row.decision_price,
    })
}

/// A new run's client order ids start with a prefix of its own, so no id is ever reused.
fn session_salt() -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.subsec_nanos() ^ (now.as_secs() as u32)
}

//! Composing the services: bridge, tick transport, pipeline and gRPC API, in one process.
//!
//! `mtml run` and `mtml replay` both start through [`App::start`], so the demo exercises exactly
//! the code a live deployment runs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use mtml_bridge::grpc::BridgeService;
use mtml_bridge::{Bridge, BridgeConfig, BridgeOutputs, BridgeStats, SymbolMapper};
use mtml_bridge::accounts::SentOrder;
use mtml_core::{ChainId, ChainLog, Side, Symbol};
use mtml_decision::{DecisionConfig, DecisionEngine, Execution, Position, RecoveredOrder, RiskEngine, RiskLimits};
use mtml_journal::{Journal, OrderRow};
use mtml_inference::{Model, ModelRepository, ModelServer, OnnxRuntime};
use mtml_registry::Registry;
use mtml_ingestion::grpc::{IngestionService, forward_ticks};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Transport};
use crate::featurize::Featurizer;
use crate::admin::AdminService;
use crate::oip::OipService;
use crate::pipeline::{OrderSink, Pipeline, PipelineCommand, PipelineOutcome, PipelineProgress};
use crate::remote::forward_orders;
use crate::prediction::PredictionService;
use crate::features_api::FeaturesService;
use crate::stores::Stores;
use crate::model_admin::ModelAdminService;
use crate::rollout::{CompareSettings, Comparison, Models, RolloutFollower, Serving, Slot, build_models};

/// The model built into the binary: trained by `cargo xtask train` on the shared EURUSD ticks
/// (see models/README.md). Used when no model path is configured.
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../../models/fx-direction-v1.onnx");

/// Loads ONNX Runtime from the configured path or the repository's `.cache`.
pub fn load_runtime(config: &Config) -> anyhow::Result<OnnxRuntime> {
    let library = match &config.runtime.onnxruntime_lib {
        Some(path) => path.clone(),
        None => mtml_inference::locate_library()?,
    };
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
    crate::models_cmd::check_against_feature_set(&model, false).map_err(anyhow::Error::msg)?;
    Ok(model)
}

/// The models the pipeline starts with: with `model.from_registry`, the registry's champion and
/// challenger of `model.name` (what is served, and the champion's bytes for the protocol);
/// otherwise, or before anything is promoted, the configured or embedded model alone.
pub async fn starting_models(
    runtime: &OnnxRuntime,
    config: &Config,
    registry: Option<&Registry>,
) -> anyhow::Result<(Models, Serving, Option<(i64, Vec<u8>)>)> {
    let configured = || -> anyhow::Result<Models> {
        let source = if config.model.path.is_some() { "file" } else { "embedded" };
        let slot = Slot { label: format!("{}:{source}", config.model.name), born_ms: None, model: load_model(runtime, config)? };
        Ok(Models::champion_only(slot))
    };
    let Some(registry) = registry else { return Ok((configured()?, Serving::default(), None)) };
    let name = &config.model.name;
    let state = registry.rollout_state(name).await?;
    let Some(champion) = state.champion else {
        tracing::warn!(model = %name, "model.from_registry: nothing promoted yet; the configured model serves until a version is");
        return Ok((configured()?, Serving::default(), None));
    };
    let champion_row = registry.show(name, Some(champion)).await?;
    let champion_bytes = registry.onnx(name, champion).await?;
    let challenger = match &state.challenger {
        Some(c) => Some((registry.show(name, Some(c.version)).await?, registry.onnx(name, c.version).await?)),
        None => None,
    };
    // At start there is nothing older to keep serving: a champion that does not load stops the
    // start, rather than trading on a model nobody chose.
    let models = build_models(runtime, &state, (&champion_row, &champion_bytes), challenger.as_ref().map(|(r, b)| (r, b.as_slice())))
        .with_context(|| format!("starting with {name}'s registry rollout (revision {})", state.revision))?;
    let serving = Serving { revision: state.revision, error: None, failed_revision: 0 };
    Ok((models, serving, Some((champion, champion_bytes))))
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

/// The connections a gRPC server accepts, with Nagle's algorithm off: small request and answer
/// frames would otherwise wait out the peer's delayed ACK (about 40 ms) whenever several are in
/// flight. `serve_with_incoming` does not set this itself.
pub fn grpc_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// A running mtml.
pub struct App {
    /// Where terminals connect.
    pub bridge_addr: SocketAddr,
    /// Where the gRPC API listens, if it runs.
    pub grpc_addr: Option<SocketAddr>,
    /// Spans and latencies of every chain.
    pub chain_log: Arc<ChainLog>,
    /// Pipeline progress.
    pub progress: Arc<PipelineProgress>,
    /// Bridge counters.
    pub bridge_stats: Arc<BridgeStats>,
    /// The feature stores and their writers.
    pub stores: Stores,
    shutdown: CancellationToken,
    bridge_task: JoinHandle<()>,
    grpc_task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    forwarder_task: Option<JoinHandle<()>>,
    order_forwarder_task: Option<JoinHandle<()>>,
    journal_task: JoinHandle<u64>,
    follower_task: Option<JoinHandle<()>>,
    /// Follows the registry's rollout of the model, with `model.from_registry`.
    pub follower: Option<Arc<RolloutFollower>>,
    commands: mpsc::UnboundedSender<PipelineCommand>,
    pipeline: std::thread::JoinHandle<PipelineOutcome>,
}

/// What to listen on.
pub struct Listeners {
    /// Terminals.
    pub bridge: TcpListener,
    /// The gRPC API; required when the transport is gRPC.
    pub grpc: Option<TcpListener>,
}

impl App {
    /// Starts every service on the given listeners.
    pub async fn start(
        config: &Config,
        runtime: &OnnxRuntime,
        listeners: Listeners,
    ) -> anyhow::Result<Self> {
        let registry = if config.model.from_registry {
            Some(
                Registry::open(&config.registry.url)
                    .await
                    .with_context(|| format!("opening the model registry at {}", config.registry.url))?,
            )
        } else {
            None
        };
        let (pipeline_models, serving, registry_champion) = starting_models(runtime, config, registry.as_ref()).await?;
        let symbols: Vec<Symbol> = config.pipeline.symbols.iter().map(|s| Symbol::new(s)).collect();
        let chain_log = Arc::new(ChainLog::default());
        let progress = Arc::new(PipelineProgress::default());
        let stores = Stores::open(config).await?;
        let shutdown = CancellationToken::new();
        let bridge_addr = listeners.bridge.local_addr()?;
        let grpc_addr = listeners.grpc.as_ref().map(TcpListener::local_addr).transpose()?;
        let remote_endpoint = || -> anyhow::Result<String> {
            let addr = grpc_addr.context("the grpc transport needs a gRPC listener")?;
            Ok(format!("http://{addr}"))
        };

        // Ticks: the bridge writes `bridge_ticks`, the pipeline reads `pipeline_rx`. In process
        // they are one channel; over gRPC the tick forwarder and the Ingestion service join them.
        let (pipeline_tx, pipeline_rx) = mpsc::channel(config.pipeline.channel_capacity);
        let mut forwarder_task = None;
        let bridge_ticks = match config.pipeline.transport {
            Transport::InProcess => pipeline_tx.clone(),
            Transport::Grpc => {
                let endpoint = remote_endpoint()?;
                let (tx, rx) = mpsc::channel(config.pipeline.channel_capacity);
                forwarder_task = Some(tokio::spawn(async move {
                    match forward_ticks(endpoint, rx).await {
                        Ok(stats) => tracing::info!(?stats, "tick forwarder finished"),
                        Err(error) => tracing::error!(%error, "tick forwarder failed"),
                    }
                }));
                tx
            }
        };

        // Execution events: the bridge writes `bridge_events`, the pipeline reads
        // `pipeline_events`; orders go the other way through an `OrderSink`.
        let (bridge_events, bridge_events_rx) = mpsc::channel(4096);
        let symbol_map = config.bridge.symbol_map.clone().into_iter().collect();
        let bridge_config = BridgeConfig {
            token: config.bridge.token.clone(),
            symbols: SymbolMapper::new(config.pipeline.symbols.clone(), symbol_map),
            heartbeat_interval: config.bridge.heartbeat,
            silence_timeout: config.bridge.silence_timeout,
            reconcile_every: config.bridge.reconcile_every,
            order_timeout: config.bridge.order_timeout,
            backpressure: config.bridge.backpressure,
            chain_prefix: config.bridge.chain_prefix,
            ..BridgeConfig::default()
        };
        let outputs = BridgeOutputs { ticks: bridge_ticks, events: bridge_events };
        let bridge = Bridge::new(bridge_config, outputs, Arc::clone(&chain_log));
        let bridge_stats = bridge.stats();
        let mut order_forwarder_task = None;
        let (orders, pipeline_events, bridge_service) = match config.pipeline.transport {
            Transport::InProcess => (OrderSink::Bridge(bridge.router()), bridge_events_rx, None),
            Transport::Grpc => {
                let endpoint = remote_endpoint()?;
                let (orders_tx, orders_rx) = mpsc::unbounded_channel();
                let (events_tx, events_rx) = mpsc::channel(4096);
                order_forwarder_task = Some(tokio::spawn(async move {
                    if let Err(error) = forward_orders(endpoint, orders_rx, events_tx).await {
                        tracing::error!(%error, "order forwarder failed");
                    }
                }));
                let service = BridgeService::new(bridge.router(), bridge_events_rx, shutdown.clone());
                (OrderSink::Remote(orders_tx), events_rx, Some(service))
            }
        };

        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let mut grpc_task = None;
        let mut follower = None;
        if let Some(listener) = listeners.grpc {
            let models = Arc::new(model_server(runtime, config)?);
            let live_name = config.model.name.clone();
            let loader = Arc::clone(&models);
            tokio::task::spawn_blocking(move || match registry_champion {
                Some((version, bytes)) => loader.install(&live_name, &version.to_string(), &bytes),
                None => loader.load(&live_name),
            })
            .await??;
            let server_models = Some(Arc::clone(&models));
            if let Some(registry) = &registry {
                follower = Some(Arc::new(RolloutFollower::new(
                    registry.clone(),
                    runtime.clone(),
                    config.model.name.clone(),
                    commands_tx.clone(),
                    server_models.clone(),
                    serving.clone(),
                ).with_gate(config.model.gate)));
            }
            let managed = registry.is_some().then(|| config.model.name.clone());
            let admin = registry
                .as_ref()
                .map(|r| ModelAdminService::new(r.clone(), runtime.clone(), follower.clone(), commands_tx.clone()));
            let prediction =
                PredictionService::live(Arc::clone(&stores.online), Arc::clone(&models), config.model.name.clone());
            let features = FeaturesService::new(&stores, symbols.iter().cloned());
            let ingestion = IngestionService::new(pipeline_tx.clone());
            let incoming = grpc_incoming(listener);
            let router = tonic::transport::Server::builder()
                .add_service(ingestion.into_server())
                .add_service(prediction.into_server())
                .add_service(features.into_server())
                .add_service(AdminService::new(commands_tx.clone()).into_server())
                .add_service(OipService::new(models).with_managed(managed).into_server())
                .add_optional_service(admin.map(ModelAdminService::into_server))
                .add_optional_service(bridge_service.map(BridgeService::into_server));
            grpc_task = Some(tokio::spawn(
                router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
            ));
        }
        drop(pipeline_tx);
        // Without a gRPC server the follower still follows the registry for the pipeline.
        if follower.is_none()
            && let Some(registry) = &registry
        {
            follower = Some(Arc::new(RolloutFollower::new(
                registry.clone(),
                runtime.clone(),
                config.model.name.clone(),
                commands_tx.clone(),
                None,
                serving.clone(),
            ).with_gate(config.model.gate)));
        }
        let follower_task = follower.clone().map(|f| f.spawn(config.model.registry_poll, shutdown.clone()));

        let journal = Journal::open(&config.journal.url)
            .await
            .with_context(|| format!("opening the journal at {}", config.journal.url))?;
        let mut execution = Execution::new(&format!("m{:x}", rand_session()));
        let recovered = journal.positions().await?;
        if !recovered.is_empty() {
            tracing::info!(positions = recovered.len(), "positions recovered from the journal");
        }
        execution.restore_positions(recovered.into_iter().map(|row| {
            let position = Position { lots: row.lots, average_price: row.average_price, realized_pnl: row.realized_pnl };
            (Symbol::new(&row.symbol), position)
        }));
        let open_orders = journal.orders(true).await?;
        if !open_orders.is_empty() {
            tracing::warn!(orders = open_orders.len(), "orders left open by the last run; never resent, settled from the terminal's next snapshot");
        }
        let recovered = recover_open_orders(&open_orders)?;
        execution.restore_orders(recovered.iter().map(|(order, _)| order.clone()));
        bridge.recover_orders(recovered.into_iter().map(|(order, sent)| (order.client_order_id, sent)));
        let (journal_tx, journal_rx) = mpsc::unbounded_channel();
        let journal_task = mtml_journal::spawn_writer(journal, journal_rx);

        let compare = CompareSettings {
            horizon_ms: config.model.compare_horizon_ms,
            buy_above: config.decision.buy_above,
            sell_below: config.decision.sell_below,
        };
        let pipeline = Pipeline {
            featurizer: Featurizer::new(symbols.clone(), config.pipeline.backwards_tolerance_ms, &wider_bars(config)),
            online: stores.online_writer.clone(),
            history: stores.history_writer.clone(),
            comparison: Comparison::for_models(&pipeline_models, compare),
            models: pipeline_models,
            compare,
            max_model_age_ms: (config.model.max_age_days > 0)
                .then(|| i64::try_from(config.model.max_age_days).unwrap_or(i64::MAX / 86_400_000) * 86_400_000),
            decision: DecisionEngine::new(DecisionConfig {
                buy_above: config.decision.buy_above,
                sell_below: config.decision.sell_below,
                min_agreeing: 1,
                sizing: config.decision.sizing,
                max_lots: config.risk.limits.max_position_lots,
                cooldown_ms: i64::try_from(config.decision.cooldown.as_millis()).unwrap_or(i64::MAX),
            }),
            risk: RiskEngine::new(RiskLimits {
                symbols: symbols.into_iter().collect(),
                ..config.risk.limits.clone()
            }),
            starting_equity: config.risk.starting_equity,
            last_mid: Default::default(),
            journal: Some(journal_tx),
            now_ms: 0,
            equity: config.risk.starting_equity,
            execution,
            orders,
            chain_log: Arc::clone(&chain_log),
            progress: Arc::clone(&progress),
            acted_target: Default::default(),
            accounts: Default::default(),
        }
        .spawn(pipeline_rx, pipeline_events, commands_rx)?;

        #[cfg(windows)]
        if let Some(name) = config.bridge.pipe_name.clone() {
            let (bridge, shutdown) = (bridge.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(error) = mtml_bridge::pipe::run_pipe(bridge, &name, shutdown).await {
                    tracing::error!(%error, pipe = %name, "named-pipe server failed");
                }
            });
        }
        let bridge_task = tokio::spawn(bridge.run(listeners.bridge, shutdown.clone()));
        tracing::info!(%bridge_addr, ?grpc_addr, transport = ?config.pipeline.transport, "mtml started");
        Ok(Self {
            bridge_addr,
            grpc_addr,
            chain_log,
            progress,
            bridge_stats,
            stores,
            shutdown,
            bridge_task,
            grpc_task,
            forwarder_task,
            order_forwarder_task,
            journal_task,
            follower_task,
            follower,
            commands: commands_tx,
            pipeline,
        })
    }

    /// Ticks the pipeline has taken (accepted or refused).
    pub fn ticks_seen(&self) -> u64 {
        self.progress.ticks_seen.load(Ordering::Acquire)
    }

    /// Where operator commands for the pipeline go.
    pub fn commands(&self) -> mpsc::UnboundedSender<PipelineCommand> {
        self.commands.clone()
    }

    /// Orders awaiting their outcome.
    pub fn orders_in_flight(&self) -> u64 {
        self.progress.orders_in_flight.load(Ordering::Acquire)
    }

    /// Stops in order: the bridge (no new ticks), the tick transport, the gRPC API (its order
    /// stream ends with the shutdown), then the pipeline once its inbox is empty, then the order
    /// forwarder. Returns what the pipeline knew.
    pub async fn stop(self) -> anyhow::Result<PipelineOutcome> {
        self.shutdown.cancel();
        if let Some(task) = self.follower_task {
            task.await.context("rollout follower task")?;
        }
        self.bridge_task.await.context("bridge task")?;
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
        // The pipeline has gone, and with it the journal's sender: the writer drains and ends.
        let written = self.journal_task.await.context("journal writer task")?;
        tracing::info!(records = written, "journal flushed");
        self.stores.close().await;
        Ok(outcome)
    }

    /// Waits for ctrl-c (or SIGTERM), then stops.
    pub async fn run_until_signal(self) -> anyhow::Result<PipelineOutcome> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

async fn shutdown_signal() {
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

/// Widths of the configured bar timeframes beyond M1 (validated by the configuration).
fn wider_bars(config: &Config) -> Vec<i64> {
    config.features.timeframes.iter().filter_map(|t| mtml_feature_store::history::timeframe_width_ms(t)).collect()
}

/// The journal's open orders, for execution and for the bridge.
fn recover_open_orders(rows: &[OrderRow]) -> anyhow::Result<Vec<(RecoveredOrder, SentOrder)>> {
    rows.iter()
        .map(|row| {
            let chain_id: ChainId = row
                .chain_id
                .parse()
                .with_context(|| format!("journal order {} has chain id {:?}", row.client_order_id, row.chain_id))?;
            let side = match row.side.as_str() {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                other => anyhow::bail!("journal order {} has side {other:?}", row.client_order_id),
            };
            let symbol = Symbol::new(&row.symbol);
            let order = RecoveredOrder {
                client_order_id: row.client_order_id.clone(),
                symbol: symbol.clone(),
                volume: row.volume,
                filled: row.filled,
                decision_price: row.decision_price,
            };
            let sent = SentOrder {
                chain_id,
                symbol,
                side,
                volume: row.volume,
                filled: row.filled,
                sent_ns: 0,
                outcome_known: false,
                acked: false,
                session: String::new(),
            };
            Ok((order, sent))
        })
        .collect()
}

fn rand_session() -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.subsec_nanos() ^ (now.as_secs() as u32)
}

/// Reads a config file path argument into a [`Config`], reporting every problem.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

//! A bridge run on its own (`mtml bridge`), next to its terminals, while the pipeline runs in
//! another process (`mtml pipeline`): ticks go to the pipeline's `mtml.v1.Ingestion` service
//! (`bridge.pipeline`), orders come in on this process's `mtml.v1.Bridge` service. Its spans
//! (a tick's receipt, an order's sending and fill) go to the chain history as the `bridge`
//! process's part of each chain, beside the pipeline's.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use mtml_bridge::grpc::BridgeService;
use mtml_bridge::{Bridge, BridgeOutputs, BridgeStats};
use mtml_core::ChainLog;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{Access, ChainHistory, bridge_config, open_journal, spawn_forwarder, spawn_named};
use crate::config::Config;
use crate::services;

/// A running bridge on its own.
pub struct BridgeApp {
    /// Where terminals connect.
    pub bridge_addr: SocketAddr,
    /// Where `mtml.v1.Bridge` is served.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// The bridge's counters.
    pub stats: Arc<BridgeStats>,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    history: ChainHistory,
}

impl BridgeApp {
    /// Starts the bridge on `bridge`, `mtml.v1.Bridge` on `grpc`, and the metrics on `metrics`.
    pub async fn start(config: &Config, bridge: TcpListener, grpc: TcpListener, metrics: Option<TcpListener>) -> anyhow::Result<Self> {
        let pipeline = config.bridge.pipeline.as_ref().context("a bridge on its own needs bridge.pipeline, the pipeline's gRPC URL")?;
        config.check_bridge_exposure(bridge.local_addr()?)?;
        let metrics_addr = metrics.as_ref().map(TcpListener::local_addr).transpose()?;
        let tls = crate::tls::server_tls(&config.tls)?;
        let terminal_tls = config.bridge.tls.then(|| crate::tls::terminal_tls(&config.tls)).transpose()?;
        let http_tls = crate::tls::http_tls(&config.tls)?;
        let tokens = config.tokens_for(&[("grpc.listen", Some(grpc.local_addr()?)), ("metrics.listen", metrics_addr)])?;
        let shutdown = CancellationToken::new();
        let chain_log = Arc::new(ChainLog::default().with_sample(config.journal.chain_sample_basis_points));
        let journal = open_journal(config, Access::ReadWrite).await?;
        let (history, _) = ChainHistory::start(config, Arc::clone(&chain_log), "bridge", true, journal.clone())?;

        let (ticks, to_pipeline) = mpsc::channel(config.pipeline.channel_capacity);
        let (events, events_rx) = mpsc::channel(4096);
        let bridge_server = Bridge::new(bridge_config(config, &mtml_core::Notices::default(), terminal_tls), BridgeOutputs { ticks, events }, Arc::clone(&chain_log));
        let stats = bridge_server.stats();
        let service = BridgeService::new(bridge_server.router(), events_rx, shutdown.clone());
        let (bridge_addr, grpc_addr) = (bridge.local_addr()?, grpc.local_addr()?);
        let guard = crate::app::audited_guard(tokens, &journal);

        let router = services::bridge_router(service, Arc::clone(&guard), tls).await;
        let grpc_task = spawn_named(
            "grpc_server",
            router.serve_with_incoming_shutdown(services::grpc_incoming(grpc), shutdown.clone().cancelled_owned()),
        );
        let mut tasks = vec![("tick forwarder", spawn_forwarder(&pipeline.clone().with_client(&config.client)?, to_pipeline)?)];
        if let Some(listener) = metrics {
            let sources = services::metrics::Sources { pipeline: None, bridge: Some(Arc::clone(&stats)), chain_log: Arc::clone(&chain_log), otlp: history.otlp_stats.clone(), guard };
            tasks.push(("metrics server", spawn_named("metrics_server", services::metrics::serve(listener, http_tls, sources, shutdown.clone().cancelled_owned()))));
        }
        tasks.insert(0, ("bridge", spawn_named("bridge", bridge_server.run(bridge, shutdown.clone()))));
        tracing::info!(%bridge_addr, %grpc_addr, pipeline = pipeline.as_str(), "mtml bridge started");
        Ok(Self { bridge_addr, grpc_addr, metrics_addr, stats, shutdown, tasks, grpc_task, history })
    }

    /// Stops: the bridge (no new ticks), the forwarder once it has handed on what it holds,
    /// the gRPC service, then the chain history.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for (name, task) in self.tasks {
            task.await.with_context(|| format!("{name} task"))?;
        }
        self.grpc_task.await.context("gRPC task")?.context("gRPC server")?;
        self.history.finish().await
    }

    /// Waits for ctrl-c (or SIGTERM), then stops.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        crate::app::shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

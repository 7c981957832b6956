//! The gRPC API of a running instance: service adapters over the libraries, and the one
//! error boundary ([`status`]) where their errors become `tonic::Status`.
//!
//! - [`admin`]: `mtml.v1.Admin`, the trading state.
//! - [`chains`]: `mtml.v1.Chains`, the chain history.
//! - [`features`]: `mtml.v1.Features`, the feature stores.
//! - [`prediction`]: `mtml.v1.Prediction`, a prediction from the latest stored features.
//! - [`oip`]: the Open Inference Protocol (`inference.GRPCInferenceService`, KServe v2).
//! - [`model_admin`]: `mtml.v1.ModelAdmin`, uploads and rollout.
//!
//! `mtml.v1.Ingestion` and `mtml.v1.Bridge` live with their libraries (ingestion, bridge), which
//! own their streams; [`router`] mounts them beside these.

pub mod admin;
pub mod chains;
pub mod features;
pub mod metrics;
pub mod model_admin;
pub mod oip;
pub mod prediction;
pub(crate) mod status;

use std::sync::Arc;

use mtml_bridge::grpc::BridgeService;
use mtml_core::Tick;
use mtml_inference::{ModelServer, OnnxRuntime};
use mtml_ingestion::grpc::IngestionService;
use mtml_pipeline::PipelineHandle;
use mtml_registry::Registry;
use mtml_rollout::RolloutFollower;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::Router;

use crate::config::Config;
use crate::stores::Stores;

/// What the services of an instance are built over.
pub struct ServiceParts<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// ONNX Runtime, for validating uploads.
    pub runtime: &'a OnnxRuntime,
    /// The model registry, with `model.from_registry`.
    pub registry: Option<&'a Registry>,
    /// The registry follower, with `model.from_registry`.
    pub follower: Option<Arc<RolloutFollower>>,
    /// The running pipeline.
    pub pipeline: PipelineHandle,
    /// The model server of the Open Inference Protocol and `PredictSymbol`.
    pub models: Arc<ModelServer>,
    /// The feature stores.
    pub stores: &'a Stores,
    /// The pipeline's tick inbox, for `Ingestion.StreamTicks`.
    pub ticks: mpsc::Sender<Tick>,
    /// `mtml.v1.Bridge`, when execution reaches the bridge over gRPC.
    pub bridge: Option<BridgeService>,
    /// The journal, whose chain history `mtml.v1.Chains` serves.
    pub journal: mtml_journal::Journal,
    /// Who may call which method.
    pub guard: Arc<mtml_auth::Guard>,
    /// TLS of the server, when configured.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

/// Every service of an instance on one gRPC server, each call admitted by the guard first.
pub async fn router(parts: ServiceParts<'_>) -> Router<mtml_auth::Guarded> {
    let config = parts.config;
    let managed = parts.registry.is_some().then(|| config.model.name.clone());
    let model_admin = parts.registry.map(|registry| {
        let traded = config.pipeline.symbols.clone();
        model_admin::ModelAdminService::new(registry.clone(), parts.runtime.clone(), parts.follower.clone(), parts.pipeline.clone(), traded)
    });
    let prediction =
        prediction::PredictionService::live(Arc::clone(&parts.stores.online), Arc::clone(&parts.models), config.model.name.clone());
    let ingestion = IngestionService::new(parts.ticks).into_server();
    let prediction = prediction.into_server();
    let features = features::FeaturesService::new(parts.stores, config.symbols()).into_server();
    let admin = admin::AdminService::new(parts.pipeline).into_server();
    let chains = chains::ChainsService::new(parts.journal).into_server();
    let oip = oip::OipService::new(parts.models).with_managed(managed).into_server();
    let model_admin = model_admin.map(model_admin::ModelAdminService::into_server);
    let bridge = parts.bridge.map(BridgeService::into_server);
    // The standard health service (grpc.health.v1): the server and every service it serves.
    let mut serving = vec![
        name_of(&ingestion),
        name_of(&prediction),
        name_of(&features),
        name_of(&admin),
        name_of(&chains),
        name_of(&oip),
    ];
    serving.extend(model_admin.as_ref().map(name_of));
    serving.extend(bridge.as_ref().map(name_of));
    guarded_server(parts.guard, parts.tls)
        .add_service(health(&serving).await)
        .add_service(ingestion)
        .add_service(prediction)
        .add_service(features)
        .add_service(admin)
        .add_service(chains)
        .add_service(oip)
        .add_optional_service(model_admin)
        .add_optional_service(bridge)
}

/// The gRPC server of a bridge run on its own (`mtml bridge`): `mtml.v1.Bridge` and health,
/// each call admitted by the guard first.
pub async fn bridge_router(bridge: BridgeService, guard: Arc<mtml_auth::Guard>, tls: Option<tonic::transport::ServerTlsConfig>) -> Router<mtml_auth::Guarded> {
    let bridge = bridge.into_server();
    guarded_server(guard, tls).add_service(health(&[name_of(&bridge)]).await).add_service(bridge)
}

/// Streams one client connection may have open at once (HTTP/2's
/// SETTINGS_MAX_CONCURRENT_STREAMS): a client opening more waits for one to end.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// The one way a gRPC server of mtml is built: TLS when configured (checked at start by
/// [`crate::tls::server_tls`]), every call admitted by `guard` first, streams per connection
/// bounded. (Messages are bounded per service: 4 MiB, tonic's default, except model upload
/// chunks, 8 MiB, and whole models, `model_admin::MAX_MODEL_BYTES`.)
fn guarded_server(guard: Arc<mtml_auth::Guard>, tls: Option<tonic::transport::ServerTlsConfig>) -> tonic::transport::Server<mtml_auth::Guarded> {
    let server = tonic::transport::Server::builder().max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let server = match tls {
        // Checked when the settings were read: it cannot fail here.
        Some(tls) => server.tls_config(tls).unwrap_or_else(|e| unreachable!("TLS settings checked at start: {e}")),
        None => server,
    };
    server.layer(mtml_auth::AuthLayer::new(guard))
}

/// The standard health service (`grpc.health.v1`), the server and each of `serving` SERVING.
async fn health(serving: &[&'static str]) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in serving {
        reporter.set_service_status(*service, tonic_health::ServingStatus::Serving).await;
    }
    health
}

/// The chain a call belongs to: the trace id of its W3C `traceparent` metadata (a malformed one
/// is ignored, as W3C asks), else a new chain.
pub(crate) fn call_chain<T>(request: &tonic::Request<T>, ids: &mtml_core::ChainIdGenerator) -> mtml_core::ChainId {
    let given = request.metadata().get("traceparent").and_then(|v| v.to_str().ok()).and_then(mtml_core::TraceParent::parse);
    given.map_or_else(|| ids.next_id(), |parent| parent.chain)
}

/// `answer` with `traceparent` metadata naming its chain and this server's inference span, so a
/// caller's tracer joins it to the chain.
pub(crate) fn traced<T>(answer: T, chain: mtml_core::ChainId) -> tonic::Response<T> {
    let mut response = tonic::Response::new(answer);
    let parent = mtml_telemetry::span_id(chain, Some(mtml_core::Stage::Inference), 0);
    let header = mtml_core::TraceParent { chain, parent, sampled: true }.to_string();
    if let Ok(value) = header.parse() {
        response.metadata_mut().insert("traceparent", value);
    }
    response
}

/// A served gRPC service's full name (`mtml.v1.Prediction`).
fn name_of<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// The connections a gRPC server accepts, with Nagle's algorithm off: small request and answer
/// frames would otherwise wait out the peer's delayed ACK (about 40 ms) whenever several are in
/// flight. `serve_with_incoming` does not set this itself.
pub fn grpc_incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

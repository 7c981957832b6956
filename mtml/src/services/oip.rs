//! `inference.GRPCInferenceService`: the Open Inference Protocol (KServe v2) over gRPC, as
//! Python `tritonclient` and the KServe SDK speak it.
//!
//! The protocol's tensors are checked against the model's signature here, at the service edge,
//! and every refusal says what was expected; the models themselves run on the model server's
//! worker threads, never on the async runtime. A request without an `id` gets the chain of its
//! W3C `traceparent` (or a fresh one) as its id, and the answer carries `traceparent` back, so it
//! can be traced like a tick's.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use mtml_core::ChainIdGenerator;
use mtml_inference::{LoadedModel, ModelServer};
use mtml_proto::inference as oip;
use mtml_proto::inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use tonic::{Request, Response, Status};

use crate::services::status::IntoStatus;

/// The Open Inference Protocol over a [`ModelServer`].
#[derive(Debug, Clone)]
pub struct OipService {
    server: Arc<ModelServer>,
    chain_ids: Arc<ChainIdGenerator>,
    /// A model whose versions the registry's rollout decides (`model.from_registry`): the
    /// repository calls may not load or unload it behind the rollout's back.
    managed: Option<String>,
}

impl OipService {
    /// Serves the models of `server`.
    pub fn new(server: Arc<ModelServer>) -> Self {
        Self { server, chain_ids: Arc::new(ChainIdGenerator::new()), managed: None }
    }

    /// Refuses repository loads and unloads of `name`, which follows the registry's rollout.
    pub fn with_managed(mut self, name: Option<String>) -> Self {
        self.managed = name;
        self
    }

    fn refuse_managed(&self, name: &str) -> Result<(), Status> {
        match &self.managed {
            Some(managed) if managed == name => Err(Status::failed_precondition(format!(
                "model {name:?} follows the registry's rollout: change it with `mtml models promote | rollout | rollback`"
            ))),
            _ => Ok(()),
        }
    }

    /// As a tonic service.
    pub fn into_server(self) -> GrpcInferenceServiceServer<Self> {
        GrpcInferenceServiceServer::new(self)
    }
}


/// The features of a request: `batch` rows, row-major, and whether they came as raw bytes.
struct Features {
    values: Vec<f32>,
    batch: usize,
    raw: bool,
}

/// Checks the request's one input against the model and reads its values.
fn features(model: &LoadedModel, request: &oip::ModelInferRequest) -> Result<Features, Status> {
    let signature = model.signature();
    let name = model.name();
    let n = signature.features;
    let [input] = request.inputs.as_slice() else {
        return Err(Status::invalid_argument(format!(
            "model {name} takes 1 input ({} FP32 [batch, {n}]), got {}",
            signature.input,
            request.inputs.len()
        )));
    };
    if input.name != signature.input {
        return Err(Status::invalid_argument(format!(
            "model {name} has no input {:?}; its input is {:?} (FP32 [batch, {n}])",
            input.name, signature.input
        )));
    }
    if input.datatype != "FP32" {
        return Err(Status::invalid_argument(format!(
            "input {} of model {name} is FP32, got {}",
            input.name, input.datatype
        )));
    }
    let batch = match input.shape.as_slice() {
        [rows, cols] if *rows >= 1 && usize::try_from(*cols).ok() == Some(n) => usize::try_from(*rows).unwrap_or(0),
        other => {
            return Err(Status::invalid_argument(format!(
                "input {} of model {name} has shape [batch, {n}], got {other:?}",
                input.name
            )));
        }
    };
    let expected = batch * n;
    let (values, raw) = match request.raw_input_contents.as_slice() {
        [] => {
            let values = input.contents.as_ref().map(|c| c.fp32_contents.clone()).unwrap_or_default();
            (values, false)
        }
        [bytes] => {
            if bytes.len() != expected * 4 {
                return Err(Status::invalid_argument(format!(
                    "raw input {} of model {name} must be {} bytes ({expected} little-endian FP32), got {}",
                    input.name,
                    expected * 4,
                    bytes.len()
                )));
            }
            let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (values, true)
        }
        more => {
            return Err(Status::invalid_argument(format!(
                "model {name} takes 1 input, got {} raw input contents",
                more.len()
            )));
        }
    };
    if values.len() != expected {
        return Err(Status::invalid_argument(format!(
            "input {} of model {name} with shape [{batch}, {n}] needs {expected} FP32 values, got {}",
            input.name,
            values.len()
        )));
    }
    Ok(Features { values, batch, raw })
}

#[tonic::async_trait]
impl GrpcInferenceService for OipService {
    async fn server_live(&self, _: Request<oip::ServerLiveRequest>) -> Result<Response<oip::ServerLiveResponse>, Status> {
        Ok(Response::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<oip::ServerReadyRequest>) -> Result<Response<oip::ServerReadyResponse>, Status> {
        Ok(Response::new(oip::ServerReadyResponse { ready: !self.server.loaded().is_empty() }))
    }

    async fn model_ready(&self, request: Request<oip::ModelReadyRequest>) -> Result<Response<oip::ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = self.server.get(&request.name, &request.version).is_ok();
        Ok(Response::new(oip::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<oip::ServerMetadataRequest>,
    ) -> Result<Response<oip::ServerMetadataResponse>, Status> {
        Ok(Response::new(oip::ServerMetadataResponse {
            name: "mtml".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["model_repository".into(), "statistics".into()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<oip::ModelMetadataRequest>,
    ) -> Result<Response<oip::ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let model = self.server.get(&request.name, &request.version).map_err(IntoStatus::into_status)?;
        let signature = model.signature();
        let tensor = |name: &str, width: usize| oip::model_metadata_response::TensorMetadata {
            name: name.to_owned(),
            datatype: "FP32".into(),
            shape: vec![-1, i64::try_from(width).unwrap_or(i64::MAX)],
        };
        Ok(Response::new(oip::ModelMetadataResponse {
            name: model.name().to_owned(),
            versions: vec![model.version().to_owned()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![tensor(&signature.input, signature.features)],
            outputs: vec![tensor(&signature.probabilities, 2)],
        }))
    }

    async fn model_infer(&self, request: Request<oip::ModelInferRequest>) -> Result<Response<oip::ModelInferResponse>, Status> {
        let chain = crate::services::call_chain(&request, &self.chain_ids);
        let request = request.into_inner();
        let model = self.server.get(&request.model_name, &request.model_version).map_err(IntoStatus::into_status)?;
        let probabilities = model.signature().probabilities.clone();
        if let Some(other) = request.outputs.iter().find(|o| o.name != probabilities) {
            return Err(Status::invalid_argument(format!(
                "model {} has no output {:?}; its output is {probabilities:?} (FP32 [batch, 2])",
                model.name(),
                other.name
            )));
        }
        let features = features(&model, &request)?;
        let batch = features.batch;
        let values = model.infer(features.values, batch).await.map_err(IntoStatus::into_status)?;
        let id = if request.id.is_empty() { chain.to_string() } else { request.id };
        let mut output = oip::model_infer_response::InferOutputTensor {
            name: probabilities,
            datatype: "FP32".into(),
            shape: vec![i64::try_from(batch).unwrap_or(i64::MAX), 2],
            ..Default::default()
        };
        // Answer in the form asked: raw bytes for raw input (as tritonclient sends), typed
        // contents otherwise.
        let mut raw_output_contents = Vec::new();
        if features.raw {
            raw_output_contents.push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        } else {
            output.contents = Some(oip::InferTensorContents { fp32_contents: values, ..Default::default() });
        }
        Ok(crate::services::traced(oip::ModelInferResponse {
            model_name: model.name().to_owned(),
            model_version: model.version().to_owned(),
            id,
            parameters: Default::default(),
            outputs: vec![output],
            raw_output_contents,
        }, chain))
    }

    async fn model_statistics(
        &self,
        request: Request<oip::ModelStatisticsRequest>,
    ) -> Result<Response<oip::ModelStatisticsResponse>, Status> {
        let request = request.into_inner();
        let models = if request.name.is_empty() {
            self.server.loaded()
        } else {
            vec![self.server.get(&request.name, &request.version).map_err(IntoStatus::into_status)?]
        };
        let duration = |count: u64, ns: u64| Some(oip::StatisticDuration { count, ns });
        let model_stats = models
            .iter()
            .map(|model| {
                let s = &model.stats;
                let (success, executions) = (s.success_count.load(Relaxed), s.execution_count.load(Relaxed));
                oip::ModelStatistics {
                    name: model.name().to_owned(),
                    version: model.version().to_owned(),
                    last_inference: s.last_inference_ms.load(Relaxed),
                    inference_count: s.inference_count.load(Relaxed),
                    execution_count: executions,
                    inference_stats: Some(oip::InferStatistics {
                        success: duration(success, s.success_ns.load(Relaxed)),
                        fail: duration(s.fail_count.load(Relaxed), s.fail_ns.load(Relaxed)),
                        compute_infer: duration(executions, s.compute_ns.load(Relaxed)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(oip::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<oip::RepositoryIndexRequest>,
    ) -> Result<Response<oip::RepositoryIndexResponse>, Status> {
        let ready_only = request.into_inner().ready;
        let models = self
            .server
            .index()
            .into_iter()
            .filter(|entry| !ready_only || entry.state == "READY")
            .map(|entry| oip::repository_index_response::ModelIndex {
                name: entry.name,
                version: entry.version,
                state: entry.state,
                reason: entry.reason,
            })
            .collect();
        Ok(Response::new(oip::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<oip::RepositoryModelLoadRequest>,
    ) -> Result<Response<oip::RepositoryModelLoadResponse>, Status> {
        let name = request.into_inner().model_name;
        self.refuse_managed(&name)?;
        let server = Arc::clone(&self.server);
        // Creating sessions is blocking work: off the async runtime.
        tokio::task::spawn_blocking(move || server.load(&name))
            .await
            .map_err(|e| Status::internal(format!("model load task failed: {e}")))?
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(oip::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<oip::RepositoryModelUnloadRequest>,
    ) -> Result<Response<oip::RepositoryModelUnloadResponse>, Status> {
        let name = request.into_inner().model_name;
        self.refuse_managed(&name)?;
        self.server.unload(&name).map_err(IntoStatus::into_status)?;
        Ok(Response::new(oip::RepositoryModelUnloadResponse {}))
    }
}

//! The `mtml.v1.ModelAdmin` gRPC service: upload (streamed in chunks, checked against its
//! announced size and sha256), list, show, rollout, promote, rollback and the comparison report.
//!
//! Rollout changes are written to the registry, then this instance's follower is woken so the
//! change takes effect here at once; other instances on the same registry pick it up on their
//! next poll.

use std::sync::Arc;

use mtml_inference::OnnxRuntime;
use mtml_pipeline::PipelineHandle;
use mtml_proto::v1;
use mtml_proto::v1::model_admin_server::{ModelAdmin, ModelAdminServer};
use mtml_registry::{Registry, RolloutState, Route};
use mtml_rollout::{RolloutFollower, Serving, UploadRequest};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{rollout_status, version_proto};
use crate::services::status::IntoStatus;

/// Largest model file accepted, bytes.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// The service.
#[derive(Debug, Clone)]
pub struct ModelAdminService {
    registry: Registry,
    runtime: OnnxRuntime,
    follower: Option<Arc<RolloutFollower>>,
    pipeline: PipelineHandle,
    /// The symbols this instance trades (a canary elsewhere is refused).
    traded: Vec<String>,
}

impl ModelAdminService {
    /// A service over `registry`; `follower` applies rollout changes to this instance when it
    /// serves from the registry.
    pub fn new(
        registry: Registry,
        runtime: OnnxRuntime,
        follower: Option<Arc<RolloutFollower>>,
        pipeline: PipelineHandle,
        traded: Vec<String>,
    ) -> Self {
        Self { registry, runtime, follower, pipeline, traded }
    }

    /// The tonic server.
    pub fn into_server(self) -> ModelAdminServer<Self> {
        ModelAdminServer::new(self).max_decoding_message_size(8 << 20)
    }

    async fn status(&self, state: RolloutState, message: String) -> v1::RolloutStatus {
        let serving = match &self.follower {
            Some(f) if f.name() == state.name => {
                // The change applies here before the answer, so a caller sees it in force (or
                // the reason it is not, in `serving_error`).
                let _ = f.sync().await;
                f.serving()
            }
            _ => Serving::default(),
        };
        rollout_status(&state, message, &serving)
    }
}

fn now_ms() -> i64 {
    mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock)
}

fn actor(given: &str) -> String {
    if given.is_empty() { "grpc".to_owned() } else { given.to_owned() }
}

#[tonic::async_trait]
impl ModelAdmin for ModelAdminService {
    async fn list_models(&self, _: Request<v1::ListModelsRequest>) -> Result<Response<v1::ListModelsResponse>, Status> {
        let rows = self.registry.list().await.map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::ListModelsResponse { models: rows.iter().map(version_proto).collect() }))
    }

    async fn upload_model(&self, request: Request<Streaming<v1::UploadModelChunk>>) -> Result<Response<v1::ModelVersion>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(v1::UploadModelChunk { part: Some(v1::upload_model_chunk::Part::Header(h)) })) => h,
            Some(Ok(_)) => return Err(Status::invalid_argument("the first message of an upload must be its header (name, size, sha256)")),
            Some(Err(status)) => return Err(status),
            None => return Err(Status::invalid_argument("empty upload: no header")),
        };
        if header.name.is_empty() {
            return Err(Status::invalid_argument("the upload header names no model"));
        }
        if header.sha256.len() != 64 {
            return Err(Status::invalid_argument(format!(
                "the upload header of {} carries no sha256 (64 hex digits) to check the bytes against",
                header.name
            )));
        }
        if header.size_bytes > MAX_MODEL_BYTES {
            return Err(Status::invalid_argument(format!("{} bytes is over the {MAX_MODEL_BYTES}-byte limit", header.size_bytes)));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(header.size_bytes).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            match chunk?.part {
                Some(v1::upload_model_chunk::Part::Data(data)) => {
                    if (bytes.len() + data.len()) as u64 > header.size_bytes {
                        return Err(Status::invalid_argument(format!(
                            "upload of {} sent more than the {} bytes its header announced",
                            header.name, header.size_bytes
                        )));
                    }
                    bytes.extend_from_slice(&data);
                }
                Some(v1::upload_model_chunk::Part::Header(_)) => return Err(Status::invalid_argument("a second header in one upload")),
                None => {}
            }
        }
        if bytes.len() as u64 != header.size_bytes {
            return Err(Status::invalid_argument(format!(
                "upload of {} is truncated: {} of the {} bytes announced arrived",
                header.name,
                bytes.len(),
                header.size_bytes
            )));
        }
        let sha256 = mtml_registry::sha256_hex(&bytes);
        if !header.sha256.eq_ignore_ascii_case(&sha256) {
            return Err(Status::data_loss(format!(
                "upload of {}: the bytes received have sha256 {sha256}, not the {} announced; refusing a damaged copy",
                header.name, header.sha256
            )));
        }
        let upload = UploadRequest {
            name: header.name.clone(),
            bytes,
            metrics_json: header.metrics_json,
            uploaded_by: actor(&header.uploaded_by),
            label: format!("upload of {}", header.name),
        };
        let row = mtml_rollout::register(&self.runtime, &self.registry, upload).await.map_err(IntoStatus::into_status)?;
        tracing::info!(model = %row.name, version = row.version, sha256 = %row.sha256, "model uploaded");
        Ok(Response::new(version_proto(&row)))
    }

    async fn show_model(&self, request: Request<v1::ShowModelRequest>) -> Result<Response<v1::ShowModelResponse>, Status> {
        let spec = request.into_inner().spec;
        let (name, version) = mtml_registry::split_spec(&spec);
        let version = self.registry.resolve(name, version).await.map_err(IntoStatus::into_status)?;
        let row = self.registry.show(name, Some(version)).await.map_err(IntoStatus::into_status)?;
        let state = self.registry.rollout_state(name).await.map_err(IntoStatus::into_status)?;
        let serving = self.follower.as_ref().filter(|f| f.name() == name).map(|f| f.serving()).unwrap_or_default();
        Ok(Response::new(v1::ShowModelResponse {
            version: Some(version_proto(&row)),
            rollout: Some(rollout_status(&state, String::new(), &serving)),
        }))
    }

    async fn rollout(&self, request: Request<v1::RolloutRequest>) -> Result<Response<v1::RolloutStatus>, Status> {
        let r = request.into_inner();
        let route = match r.route {
            Some(v1::rollout_request::Route::Shadow(_)) => Route::Shadow,
            Some(v1::rollout_request::Route::Canary(c)) => Route::Canary {
                percent: u8::try_from(c.percent).map_err(|_| Status::invalid_argument(format!("a canary takes 1 to 100 percent, not {}", c.percent)))?,
                symbols: mtml_rollout::canary_symbols(&c.symbols, &self.traded).map_err(Status::invalid_argument)?,
            },
            None => return Err(Status::invalid_argument("a rollout needs a route: shadow or canary")),
        };
        let described = route.to_string();
        let state = self.registry.start_rollout(&r.name, r.version, route, &actor(&r.actor), now_ms()).await.map_err(IntoStatus::into_status)?;
        let message = format!("{}:{} on {described} beside champion {}", r.name, r.version, state.champion.unwrap_or(0));
        Ok(Response::new(self.status(state, message).await))
    }

    async fn promote(&self, request: Request<v1::PromoteRequest>) -> Result<Response<v1::RolloutStatus>, Status> {
        let r = request.into_inner();
        let state = self.registry.promote(&r.name, r.version, &actor(&r.actor), now_ms()).await.map_err(IntoStatus::into_status)?;
        let message = format!("{}:{} is the champion", r.name, r.version);
        Ok(Response::new(self.status(state, message).await))
    }

    async fn rollback(&self, request: Request<v1::RollbackRequest>) -> Result<Response<v1::RolloutStatus>, Status> {
        let r = request.into_inner();
        let (outcome, state) = self.registry.rollback(&r.name, &actor(&r.actor), now_ms()).await.map_err(IntoStatus::into_status)?;
        Ok(Response::new(self.status(state, outcome.to_string()).await))
    }

    async fn compare_models(&self, request: Request<v1::CompareModelsRequest>) -> Result<Response<v1::CompareModelsResponse>, Status> {
        let name = request.into_inner().name;
        if let Some(f) = &self.follower
            && !name.is_empty()
            && f.name() != name
        {
            return Err(Status::not_found(format!("this instance rolls out {}, not {name}", f.name())));
        }
        let report = self.pipeline.comparison().await.map_err(IntoStatus::into_status)?;
        Ok(Response::new(match report {
            Some(report) => v1::CompareModelsResponse {
                active: true,
                report_json: serde_json::to_string(&report).unwrap_or_default(),
                report_text: report.text(),
            },
            None => v1::CompareModelsResponse { active: false, report_json: String::new(), report_text: "no challenger on trial here\n".into() },
        }))
    }
}

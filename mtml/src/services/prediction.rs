//! The `mtml.v1.Prediction` gRPC service: predictions for a symbol from the feature store.

use std::sync::Arc;

use mtml_core::clock::{Clock, SystemClock};
use mtml_core::{ChainIdGenerator, Symbol};
use mtml_feature_store::{FEATURE_SET, OnlineStore};
use mtml_inference::ModelServer;
use mtml_proto::v1::prediction_server::{Prediction, PredictionServer};
use mtml_proto::v1::{FeatureValue, PredictSymbolRequest, PredictSymbolResponse};
use tonic::{Request, Response, Status};

use crate::services::status::IntoStatus;

/// Serves predictions from the latest stored features on the model server's worker sessions (the
/// ones the Open Inference Protocol uses, never the pipeline's), off the async runtime.
#[derive(Clone)]
pub struct PredictionService {
    store: Arc<dyn OnlineStore>,
    models: Arc<ModelServer>,
    default_model: String,
    clock: Arc<dyn Clock>,
    chain_ids: Arc<ChainIdGenerator>,
}

impl PredictionService {
    /// A service reading `store` and predicting with the models of `models`, `default_model`
    /// when a request names none. Feature age is measured against `clock`: the system clock
    /// live, the replayed market clock in replays.
    pub fn new(store: Arc<dyn OnlineStore>, models: Arc<ModelServer>, default_model: String, clock: Arc<dyn Clock>) -> Self {
        Self { store, models, default_model, clock, chain_ids: Arc::new(ChainIdGenerator::new()) }
    }

    /// With the system clock.
    pub fn live(store: Arc<dyn OnlineStore>, models: Arc<ModelServer>, default_model: String) -> Self {
        Self::new(store, models, default_model, Arc::new(SystemClock))
    }

    /// The tonic server.
    pub fn into_server(self) -> PredictionServer<Self> {
        PredictionServer::new(self)
    }
}

#[tonic::async_trait]
impl Prediction for PredictionService {
    async fn predict_symbol(
        &self,
        request: Request<PredictSymbolRequest>,
    ) -> Result<Response<PredictSymbolResponse>, Status> {
        let chain = crate::services::call_chain(&request, &self.chain_ids);
        let request = request.into_inner();
        let symbol = Symbol::new(&request.symbol);
        let name = if request.model.is_empty() { &self.default_model } else { &request.model };
        let model = self.models.get(name, "").map_err(IntoStatus::into_status)?;
        let latest = self
            .store
            .latest(&symbol, self.clock.now_ms())
            .await
            .map_err(IntoStatus::into_status)?
            .ok_or_else(|| {
                Status::not_found(format!("no features for symbol {:?} (unknown or not warmed up)", request.symbol))
            })?;
        let probabilities = model.infer(latest.vector.as_f32().to_vec(), 1).await.map_err(IntoStatus::into_status)?;
        let features = FEATURE_SET
            .names()
            .zip(latest.vector.values)
            .map(|(name, value)| FeatureValue { name: name.to_owned(), value })
            .collect();
        Ok(crate::services::traced(PredictSymbolResponse {
            chain_id: Some(chain.into()),
            model: model.name().to_owned(),
            model_version: model.version().to_owned(),
            probability_up: probabilities[1],
            features,
            feature_age_ms: latest.age_ms,
            feature_set: FEATURE_SET.id(),
            stale: latest.stale,
            feature_time_ms: latest.vector.time_msc,
        }, chain))
    }
}

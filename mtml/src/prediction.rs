//! The `mtml.v1.Prediction` gRPC service: predictions for a symbol from the feature store.

use std::sync::Arc;

use mtml_core::clock::{Clock, SystemClock};
use mtml_core::{ChainIdGenerator, Symbol};
use mtml_feature_store::{FX_V1, OnlineStore};
use mtml_inference::Model;
use mtml_proto::v1::prediction_server::{Prediction, PredictionServer};
use mtml_proto::v1::{FeatureValue, PredictSymbolRequest, PredictSymbolResponse};
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

/// Serves predictions from the latest stored features, with a model session of its own (never the
/// pipeline's), run off the async runtime.
#[derive(Clone)]
pub struct PredictionService {
    store: Arc<dyn OnlineStore>,
    model: Arc<Mutex<Model>>,
    clock: Arc<dyn Clock>,
    chain_ids: Arc<ChainIdGenerator>,
}

impl PredictionService {
    /// A service reading `store` and predicting with `model`. Feature age is measured against
    /// `clock`: the system clock live, the replayed market clock in replays.
    pub fn new(store: Arc<dyn OnlineStore>, model: Model, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            model: Arc::new(Mutex::new(model)),
            clock,
            chain_ids: Arc::new(ChainIdGenerator::new()),
        }
    }

    /// With the system clock.
    pub fn live(store: Arc<dyn OnlineStore>, model: Model) -> Self {
        Self::new(store, model, Arc::new(SystemClock))
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
        let request = request.into_inner();
        let symbol = Symbol::new(&request.symbol);
        let model_name = self.model.lock().name().to_owned();
        if !request.model.is_empty() && request.model != model_name {
            return Err(Status::not_found(format!(
                "unknown model {:?}; this server serves {model_name:?}",
                request.model
            )));
        }
        let latest = self
            .store
            .latest(&symbol, self.clock.now_ms())
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| {
                Status::not_found(format!("no features for symbol {:?} (unknown or not warmed up)", request.symbol))
            })?;
        let model = Arc::clone(&self.model);
        let inputs = latest.vector.as_f32();
        let probability = tokio::task::spawn_blocking(move || model.lock().predict(&inputs))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let features = FX_V1
            .names()
            .zip(latest.vector.values)
            .map(|(name, value)| FeatureValue { name: name.to_owned(), value })
            .collect();
        Ok(Response::new(PredictSymbolResponse {
            chain_id: Some(self.chain_ids.next_id().into()),
            model: model_name,
            model_version: "1".into(),
            probability_up: probability,
            features,
            feature_age_ms: latest.age_ms,
            feature_set: FX_V1.id(),
            stale: latest.stale,
            feature_time_ms: latest.vector.time_msc,
        }))
    }
}

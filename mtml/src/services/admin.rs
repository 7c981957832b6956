//! The `mtml.v1.Admin` gRPC service: operators change a running instance's trading state
//! (`mtml halt`, `mtml reduce`, `mtml resume`).

use mtml_pipeline::PipelineHandle;
use mtml_proto::v1;
use mtml_proto::v1::admin_server::{Admin, AdminServer};
use tonic::{Request, Response, Status};

use crate::convert::{state_from_proto, state_to_proto};
use crate::services::status::IntoStatus;

/// Hands operator commands to the pipeline thread, which owns the risk engine.
#[derive(Debug, Clone)]
pub struct AdminService {
    pipeline: PipelineHandle,
}

impl AdminService {
    /// A service commanding the pipeline behind `pipeline`.
    pub fn new(pipeline: PipelineHandle) -> Self {
        Self { pipeline }
    }

    /// The tonic server.
    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn set_trading_state(
        &self,
        request: Request<v1::SetTradingStateRequest>,
    ) -> Result<Response<v1::TradingStateReply>, Status> {
        let request = request.into_inner();
        let state = state_from_proto(request.state)
            .ok_or_else(|| Status::invalid_argument("state must be ACTIVE, REDUCING or HALTED"))?;
        let reason = if request.reason.is_empty() { "no reason given".into() } else { request.reason };
        let answer = self.pipeline.set_trading_state(state, reason).await.map_err(IntoStatus::into_status)?;
        let state = answer.map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::TradingStateReply { state: state_to_proto(state) as i32 }))
    }

    async fn get_trading_state(
        &self,
        _request: Request<v1::GetTradingStateRequest>,
    ) -> Result<Response<v1::TradingStateReply>, Status> {
        let state = self.pipeline.trading_state().await.map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::TradingStateReply { state: state_to_proto(state) as i32 }))
    }
}

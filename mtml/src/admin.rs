//! The `mtml.v1.Admin` gRPC service: operators change a running instance's trading state
//! (`mtml halt`, `mtml reduce`, `mtml resume`).

use mtml_decision::TradingState;
use mtml_proto::v1;
use mtml_proto::v1::admin_server::{Admin, AdminServer};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use crate::pipeline::PipelineCommand;

/// Hands operator commands to the pipeline thread, which owns the risk engine.
#[derive(Debug, Clone)]
pub struct AdminService {
    commands: mpsc::UnboundedSender<PipelineCommand>,
}

impl AdminService {
    /// A service commanding the pipeline through `commands`.
    pub fn new(commands: mpsc::UnboundedSender<PipelineCommand>) -> Self {
        Self { commands }
    }

    /// The tonic server.
    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }
}

/// Protobuf to domain trading state.
pub fn state_from_proto(state: i32) -> Option<TradingState> {
    match v1::TradingState::try_from(state) {
        Ok(v1::TradingState::Active) => Some(TradingState::Active),
        Ok(v1::TradingState::Reducing) => Some(TradingState::Reducing),
        Ok(v1::TradingState::Halted) => Some(TradingState::Halted),
        _ => None,
    }
}

/// Domain to protobuf trading state.
pub fn state_to_proto(state: TradingState) -> v1::TradingState {
    match state {
        TradingState::Active => v1::TradingState::Active,
        TradingState::Reducing => v1::TradingState::Reducing,
        TradingState::Halted => v1::TradingState::Halted,
    }
}

fn stopped() -> Status {
    Status::unavailable("the pipeline has stopped")
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
        let (reply, answer) = oneshot::channel();
        let reason = if request.reason.is_empty() { "no reason given".into() } else { request.reason };
        self.commands
            .send(PipelineCommand::SetTradingState { state, reason, reply })
            .map_err(|_| stopped())?;
        let state = answer.await.map_err(|_| stopped())?.map_err(Status::failed_precondition)?;
        Ok(Response::new(v1::TradingStateReply { state: state_to_proto(state) as i32 }))
    }

    async fn get_trading_state(
        &self,
        _request: Request<v1::GetTradingStateRequest>,
    ) -> Result<Response<v1::TradingStateReply>, Status> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(PipelineCommand::GetTradingState { reply }).map_err(|_| stopped())?;
        let state = answer.await.map_err(|_| stopped())?;
        Ok(Response::new(v1::TradingStateReply { state: state_to_proto(state) as i32 }))
    }
}

//! The `mtml.v1.Admin` gRPC service: operators change a running instance's trading state
//! (`mtml halt`, `mtml reduce`, `mtml resume`), read its desk and close positions (the
//! Telegram console's `/status`, `/balance`, `/positions`, `/close`).

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

    async fn get_desk(&self, _request: Request<v1::GetDeskRequest>) -> Result<Response<v1::DeskReply>, Status> {
        let desk = self.pipeline.snapshot().await.map_err(IntoStatus::into_status)?;
        let mut positions: Vec<v1::DeskPosition> = (desk.positions.iter())
            .filter(|(_, p)| p.lots != 0.0 || p.realized_pnl != 0.0)
            .map(|(symbol, p)| v1::DeskPosition {
                symbol: symbol.to_string(),
                lots: p.lots,
                average_price: p.average_price,
                realized_pnl: p.realized_pnl,
                unrealized_pnl: desk.marks.get(symbol).map_or(0.0, |mid| p.unrealized_pnl(*mid)),
            })
            .collect();
        positions.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        Ok(Response::new(v1::DeskReply {
            state: state_to_proto(desk.trading_state) as i32,
            equity: desk.equity,
            balance: desk.equity - desk.unrealized_pnl,
            realized_pnl: desk.realized_pnl,
            unrealized_pnl: desk.unrealized_pnl,
            drawdown: desk.drawdown,
            orders_in_flight: desk.orders_in_flight as u64,
            ticks_seen: desk.counters.ticks_seen,
            positions,
        }))
    }

    async fn close_positions(
        &self,
        request: Request<v1::ClosePositionsRequest>,
    ) -> Result<Response<v1::ClosePositionsReply>, Status> {
        let symbol = request.into_inner().symbol;
        let symbol = (!symbol.is_empty()).then(|| mtml_core::Symbol::new(&symbol.to_ascii_uppercase()));
        let closed = self.pipeline.close(symbol).await.map_err(IntoStatus::into_status)?;
        let closed = (closed.into_iter())
            .map(|c| match c.outcome {
                Ok((client_order_id, lots)) => v1::ClosedPosition { symbol: c.symbol.to_string(), client_order_id, lots, refused: String::new() },
                Err(refused) => v1::ClosedPosition { symbol: c.symbol.to_string(), refused: refused.to_string(), ..Default::default() },
            })
            .collect();
        Ok(Response::new(v1::ClosePositionsReply { closed }))
    }
}

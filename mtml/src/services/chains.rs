//! The `mtml.v1.Chains` gRPC service: the chain history (`mtml chain show | recent | health`)
//! for other tools, read from the journal's database.

use mtml_core::ChainId;
use mtml_journal::Journal;
use mtml_proto::v1;
use mtml_proto::v1::chains_server::{Chains, ChainsServer};
use tonic::{Request, Response, Status};

use mtml_journal::chain_report::health;
use crate::services::status::IntoStatus;

/// Reads the chain history of `journal`.
#[derive(Debug, Clone)]
pub struct ChainsService {
    journal: Journal,
}

impl ChainsService {
    /// A service over the history in `journal`.
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// The tonic server.
    pub fn into_server(self) -> ChainsServer<Self> {
        ChainsServer::new(self)
    }
}

#[tonic::async_trait]
impl Chains for ChainsService {
    async fn get_chain(&self, request: Request<v1::GetChainRequest>) -> Result<Response<v1::ChainReply>, Status> {
        let chain_id = request.into_inner().chain_id;
        let parsed: ChainId = chain_id.parse().map_err(|error| Status::invalid_argument(format!("{error}")))?;
        let spans = self.journal.chain(&parsed.to_string()).await.map_err(IntoStatus::into_status)?;
        if spans.is_empty() {
            return Err(Status::not_found(format!("chain {chain_id} is not in the history")));
        }
        let spans = spans
            .into_iter()
            .map(|s| v1::ChainSpan { stage: s.stage, service: s.service, start_unix_ns: s.start_unix_ns, duration_ns: s.duration_ns, outcome: s.outcome })
            .collect();
        Ok(Response::new(v1::ChainReply { chain_id, spans }))
    }

    async fn recent_chains(&self, request: Request<v1::RecentChainsRequest>) -> Result<Response<v1::RecentChainsReply>, Status> {
        let request = request.into_inner();
        let outcome = match request.outcome.as_str() {
            "" => None,
            "rejected" | "error" => Some(request.outcome.as_str()),
            other => return Err(Status::invalid_argument(format!("outcome {other:?}: give \"rejected\", \"error\" or nothing"))),
        };
        let limit = if request.limit == 0 { 20 } else { i64::from(request.limit) };
        let rows = self.journal.chains(request.since_ms, request.slowest, limit, outcome).await.map_err(IntoStatus::into_status)?;
        let chains = rows
            .into_iter()
            .map(|r| v1::ChainSummary { chain_id: r.chain_id, recorded_ms: r.recorded_ms, total_ns: r.total_ns, spans: r.spans })
            .collect();
        Ok(Response::new(v1::RecentChainsReply { chains }))
    }

    async fn chain_health(&self, request: Request<v1::ChainHealthRequest>) -> Result<Response<v1::ChainHealthReply>, Status> {
        let spans = self.journal.spans_since(request.into_inner().since_ms).await.map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::ChainHealthReply { text: health(&spans) }))
    }
}

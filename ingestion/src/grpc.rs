//! The tick stream over gRPC: the ingestion service, and the bridge-side forwarder that feeds it.
//!
//! Both ends move [`mtml_core::Tick`]s between bounded channels, so the bridge and the pipeline
//! see the same interface whether they share a process (a channel) or not (this module).

use std::collections::HashMap;
use std::pin::Pin;

use mtml_core::Tick;
use mtml_proto::v1::ingestion_client::IngestionClient;
use mtml_proto::v1::ingestion_server::{Ingestion, IngestionServer};
use mtml_proto::v1::{IngestAck, TickBatch, TickRejection};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Largest number of ticks the forwarder puts in one batch.
pub const MAX_BATCH: usize = 512;

/// The `mtml.v1.Ingestion` service: takes tick batches and hands the ticks to the pipeline.
#[derive(Debug, Clone)]
pub struct IngestionService {
    pipeline: mpsc::Sender<Tick>,
}

impl IngestionService {
    /// A service handing ticks to `pipeline`.
    pub fn new(pipeline: mpsc::Sender<Tick>) -> Self {
        Self { pipeline }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> IngestionServer<Self> {
        IngestionServer::new(self)
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<IngestAck, Status>> + Send>>;

#[tonic::async_trait]
impl Ingestion for IngestionService {
    type StreamTicksStream = AckStream;

    async fn stream_ticks(
        &self,
        request: Request<Streaming<TickBatch>>,
    ) -> Result<Response<Self::StreamTicksStream>, Status> {
        let mut batches = request.into_inner();
        let pipeline = self.pipeline.clone();
        let (acks, acks_rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut last_seq: HashMap<String, u64> = HashMap::new();
            while let Some(batch) = batches.next().await {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(status) => {
                        tracing::warn!(%status, "tick stream from bridge failed");
                        break;
                    }
                };
                let mut ack = IngestAck { batch_id: batch.batch_id, ..Default::default() };
                for proto_tick in batch.ticks {
                    let (seq, symbol, terminal) =
                        (proto_tick.seq, proto_tick.symbol.clone(), proto_tick.terminal.clone());
                    match Tick::try_from(proto_tick) {
                        Ok(tick) => {
                            if pipeline.send(tick).await.is_err() {
                                let _ = acks.send(Err(Status::unavailable("pipeline stopped"))).await;
                                return;
                            }
                            ack.accepted += 1;
                            let last = last_seq.entry(terminal).or_default();
                            *last = (*last).max(seq);
                        }
                        Err(error) => ack.rejections.push(TickRejection {
                            seq,
                            symbol,
                            reason: "invalid_tick".into(),
                            detail: error.to_string(),
                        }),
                    }
                }
                ack.last_seq_by_terminal = last_seq.clone();
                if acks.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(acks_rx))))
    }
}

/// Why forwarding ticks to a remote ingestion service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Could not connect.
    #[error("cannot connect to ingestion at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The stream failed.
    #[error("tick stream to ingestion failed: {0}")]
    Stream(#[from] Status),
}

/// What the forwarder saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ForwardStats {
    /// Batches sent.
    pub batches: u64,
    /// Ticks acked as accepted.
    pub accepted: u64,
    /// Ticks the service refused.
    pub rejected: u64,
}

/// Streams ticks from `ticks` to the ingestion service at `endpoint` until the channel closes,
/// then waits for the last ack.
pub async fn forward_ticks(
    endpoint: String,
    mut ticks: mpsc::Receiver<Tick>,
) -> Result<ForwardStats, ForwardError> {
    let mut client = IngestionClient::connect(endpoint.clone())
        .await
        .map_err(|source| ForwardError::Connect { endpoint, source })?;
    let (batches_tx, batches_rx) = mpsc::channel::<TickBatch>(16);
    let sender = tokio::spawn(async move {
        let mut batch_id = 0;
        while let Some(first) = ticks.recv().await {
            batch_id += 1;
            let mut batch = TickBatch { batch_id, ticks: vec![(&first).into()] };
            while batch.ticks.len() < MAX_BATCH {
                match ticks.try_recv() {
                    Ok(tick) => batch.ticks.push((&tick).into()),
                    Err(_) => break,
                }
            }
            if batches_tx.send(batch).await.is_err() {
                break;
            }
        }
        batch_id
    });
    let mut acks = client.stream_ticks(ReceiverStream::new(batches_rx)).await?.into_inner();
    let mut stats = ForwardStats::default();
    while let Some(ack) = acks.message().await? {
        stats.batches += 1;
        stats.accepted += u64::from(ack.accepted);
        stats.rejected += ack.rejections.len() as u64;
    }
    let _ = sender.await;
    Ok(stats)
}

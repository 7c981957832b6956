//! The tick stream over gRPC: the ingestion service, and the bridge-side forwarder that feeds it.
//!
//! Both ends move [`mtml_core::Tick`]s between bounded channels, so the bridge and the pipeline
//! see the same interface whether they share a process (a channel) or not (this module).
//!
//! Delivery is at least once on the wire and exactly once into the pipeline: the forwarder keeps
//! every batch until its ack arrives and, after a reconnect, resends the ones without; the
//! service drops what it has already accepted (same terminal, symbol and sequence, see
//! [`crate::dedup`]) and counts it in the ack.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mtml_core::Tick;
use mtml_proto::v1::ingestion_client::IngestionClient;
use mtml_proto::v1::ingestion_server::{Ingestion, IngestionServer};
use mtml_proto::v1::{IngestAck, TickBatch, TickRejection};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::dedup::{Deduplicator, Verdict};

/// Largest number of ticks the forwarder puts in one batch.
pub const MAX_BATCH: usize = 512;

/// Most batches the forwarder keeps unacknowledged; past that it stops taking ticks, and the
/// bridge's bounded channel pushes back on the terminals.
pub const MAX_UNACKED_BATCHES: usize = 256;

/// What the ingestion service has taken, over all streams.
#[derive(Debug, Default, Serialize)]
pub struct IngestStats {
    /// Batches received.
    pub batches: AtomicU64,
    /// Ticks handed to the pipeline.
    pub accepted: AtomicU64,
    /// Ticks dropped as already accepted.
    pub duplicates: AtomicU64,
    /// Ticks refused, by reason.
    #[serde(skip)]
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// The `mtml.v1.Ingestion` service: takes tick batches and hands the ticks to the pipeline.
#[derive(Debug, Clone)]
pub struct IngestionService {
    pipeline: mpsc::Sender<Tick>,
    // One for every stream: a bridge that reconnects opens a new stream and resends.
    dedup: Arc<Mutex<Deduplicator>>,
    stats: Arc<IngestStats>,
}

impl IngestionService {
    /// A service handing ticks to `pipeline`.
    pub fn new(pipeline: mpsc::Sender<Tick>) -> Self {
        Self { pipeline, dedup: Arc::default(), stats: Arc::default() }
    }

    /// Counters over all streams.
    pub fn stats(&self) -> Arc<IngestStats> {
        Arc::clone(&self.stats)
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> IngestionServer<Self> {
        IngestionServer::new(self)
    }

    fn reject(&self, ack: &mut IngestAck, seq: u64, symbol: String, reason: &'static str, detail: String) {
        *self.stats.rejected.lock().entry(reason).or_default() += 1;
        ack.rejections.push(TickRejection { seq, symbol, reason: reason.into(), detail });
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
        let service = self.clone();
        let (acks, acks_rx) = mpsc::channel(64);
        let span = tracing::info_span!("task", name = "tick_stream");
        tokio::spawn(tracing::Instrument::instrument(async move {
            while let Some(batch) = batches.next().await {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(status) => {
                        tracing::warn!(%status, "tick stream from bridge failed");
                        break;
                    }
                };
                service.stats.batches.fetch_add(1, Ordering::Relaxed);
                let mut ack = IngestAck { batch_id: batch.batch_id, ..Default::default() };
                for proto_tick in batch.ticks {
                    let (seq, symbol) = (proto_tick.seq, proto_tick.symbol.clone());
                    let tick = match Tick::try_from(proto_tick) {
                        Ok(tick) => tick,
                        Err(error) => {
                            service.reject(&mut ack, seq, symbol, "invalid_tick", error.to_string());
                            continue;
                        }
                    };
                    // Checked and remembered before the hand-off: a tick is new once only.
                    let verdict = service.dedup.lock().check(&tick);
                    match verdict {
                        Verdict::Duplicate => {
                            ack.duplicates += 1;
                            service.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        Verdict::OutOfOrder => service.reject(
                            &mut ack,
                            seq,
                            symbol,
                            "out_of_order",
                            format!("sequence {seq} arrived after a later tick of {} from {}", tick.symbol, tick.terminal),
                        ),
                        Verdict::New => {
                            if service.pipeline.send(tick).await.is_err() {
                                let _ = acks.send(Err(Status::unavailable("pipeline stopped"))).await;
                                return;
                            }
                            ack.accepted += 1;
                            service.stats.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                ack.last_seq_by_terminal = service.dedup.lock().last_sequences();
                if acks.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        }, span));
        Ok(Response::new(Box::pin(ReceiverStream::new(acks_rx))))
    }
}

/// Why forwarding ticks to a remote ingestion service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The input ended, but ingestion stayed unreachable for longer than the grace period, so
    /// unacknowledged ticks could not be delivered.
    #[error("ingestion at {endpoint} unreachable at shutdown: {ticks} ticks in {batches} batches not acknowledged ({last_error})")]
    Undelivered {
        /// The endpoint.
        endpoint: String,
        /// Batches without an ack.
        batches: usize,
        /// Ticks in them.
        ticks: usize,
        /// The last connection or stream error.
        last_error: String,
    },
}

/// What the forwarder saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ForwardStats {
    /// Batches sent for the first time.
    pub batches: u64,
    /// Ticks acked as accepted.
    pub accepted: u64,
    /// Ticks the service refused.
    pub rejected: u64,
    /// Ticks the service dropped as already accepted (resends).
    pub duplicates: u64,
    /// Connections made (the first one included).
    pub connections: u64,
    /// Batches sent again after a reconnect.
    pub resent_batches: u64,
}

/// How the forwarder reconnects.
#[derive(Debug, Clone, Copy)]
pub struct ForwardSettings {
    /// First delay before reconnecting; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest delay between attempts.
    pub reconnect_max: Duration,
    /// After the input ends, how long to keep trying to deliver what is unacknowledged.
    pub shutdown_grace: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self { reconnect_min: Duration::from_millis(50), reconnect_max: Duration::from_secs(2), shutdown_grace: Duration::from_secs(10) }
    }
}

/// Streams ticks from `ticks` to the ingestion service at `endpoint` until the channel closes
/// and every batch is acknowledged. A broken connection is re-established and the batches without
/// an ack are sent again, first and in order.
/// Every stream presents `bearer`, the token of a trade role.
pub async fn forward_ticks(endpoint: tonic::transport::Endpoint, bearer: mtml_auth::Bearer, ticks: mpsc::Receiver<Tick>) -> Result<ForwardStats, ForwardError> {
    forward_ticks_with(endpoint, bearer, ticks, ForwardSettings::default()).await
}

/// [`forward_ticks`] with explicit reconnection settings.
pub async fn forward_ticks_with(
    endpoint: tonic::transport::Endpoint,
    bearer: mtml_auth::Bearer,
    mut ticks: mpsc::Receiver<Tick>,
    settings: ForwardSettings,
) -> Result<ForwardStats, ForwardError> {
    let mut stats = ForwardStats::default();
    let mut unacked: VecDeque<TickBatch> = VecDeque::new();
    let mut next_batch_id = 0;
    let mut input_closed = false;
    let mut delay = settings.reconnect_min;
    let mut closed_at: Option<tokio::time::Instant> = None;
    loop {
        let last_error = match connection(&endpoint, &bearer, &mut ticks, &mut unacked, &mut next_batch_id, &mut input_closed, &mut stats).await {
            Ok(()) => return Ok(stats),
            Err(error) => error,
        };
        if input_closed {
            let since = *closed_at.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > settings.shutdown_grace {
                return Err(ForwardError::Undelivered {
                    endpoint: endpoint.uri().to_string(),
                    batches: unacked.len(),
                    ticks: unacked.iter().map(|b| b.ticks.len()).sum(),
                    last_error,
                });
            }
        }
        tracing::warn!(endpoint = %endpoint.uri(), error = %last_error, unacked = unacked.len(), retry_in = ?delay, "tick stream to ingestion broken; reconnecting and resending what has no ack");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(settings.reconnect_max);
    }
}

/// One connection: resends the unacked batches, then streams new ones. `Ok` when the input has
/// ended and everything is acked; the error text when the connection or stream failed.
async fn connection(
    endpoint: &tonic::transport::Endpoint,
    bearer: &mtml_auth::Bearer,
    ticks: &mut mpsc::Receiver<Tick>,
    unacked: &mut VecDeque<TickBatch>,
    next_batch_id: &mut u64,
    input_closed: &mut bool,
    stats: &mut ForwardStats,
) -> Result<(), String> {
    let mut client = IngestionClient::connect(endpoint.clone()).await.map_err(|e| format!("connect: {e}"))?;
    stats.connections += 1;
    let (batches_tx, batches_rx) = mpsc::channel::<TickBatch>(MAX_UNACKED_BATCHES + 1);
    for batch in unacked.iter() {
        stats.resent_batches += 1;
        batches_tx.try_send(batch.clone()).map_err(|e| format!("queueing a resend: {e}"))?;
    }
    let mut request = tonic::Request::new(ReceiverStream::new(batches_rx));
    bearer.authorize(&mut request);
    let mut acks = client.stream_ticks(request).await.map_err(|s| format!("open stream: {s}"))?.into_inner();
    if *input_closed && unacked.is_empty() {
        return Ok(());
    }
    loop {
        tokio::select! {
            tick = ticks.recv(), if !*input_closed && unacked.len() < MAX_UNACKED_BATCHES => match tick {
                Some(first) => {
                    *next_batch_id += 1;
                    let mut batch = TickBatch { batch_id: *next_batch_id, ticks: vec![(&first).into()] };
                    while batch.ticks.len() < MAX_BATCH {
                        match ticks.try_recv() {
                            Ok(tick) => batch.ticks.push((&tick).into()),
                            Err(_) => break,
                        }
                    }
                    stats.batches += 1;
                    unacked.push_back(batch.clone());
                    batches_tx.send(batch).await.map_err(|_| "stream closed while sending".to_owned())?;
                }
                None => {
                    *input_closed = true;
                    if unacked.is_empty() {
                        return Ok(());
                    }
                }
            },
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    while unacked.front().is_some_and(|b| b.batch_id <= ack.batch_id) {
                        unacked.pop_front();
                    }
                    stats.accepted += u64::from(ack.accepted);
                    stats.rejected += ack.rejections.len() as u64;
                    stats.duplicates += u64::from(ack.duplicates);
                    for rejection in &ack.rejections {
                        tracing::warn!(seq = rejection.seq, symbol = %rejection.symbol, reason = %rejection.reason, detail = %rejection.detail, "ingestion refused a tick");
                    }
                    if *input_closed && unacked.is_empty() {
                        return Ok(());
                    }
                }
                Ok(None) => return Err("ingestion ended the stream".into()),
                Err(status) => return Err(format!("stream: {status}")),
            },
        }
    }
}

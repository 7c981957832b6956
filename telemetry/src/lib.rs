//! Chains as OpenTelemetry traces, exported over OTLP (gRPC) to any collector, Jaeger or vendor
//! agent.
//!
//! A chain is a trace: its [`ChainId`] is the trace id, unchanged. The process that read the tick
//! (the bridge) exports a root span `tick`; every stage is a span under it. Span ids are derived
//! from the chain, the stage and its occurrence ([`span_id`]), so a bridge and a pipeline in two
//! processes name the same root without talking to each other, and a chain handed out again (a
//! second partial fill) adds only its new spans.
//!
//! Off by default and free when off: nothing is built unless an endpoint is configured. When on,
//! [`Exporter::offer`] never waits: chains go into a bounded queue, a background task sends them
//! in batches, retries a failed batch, and counts what it had to drop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use mtml_core::clock::unix_ns;
use mtml_core::{ChainId, Outcome, Stage, StageSpan};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The root span's name: the life of one tick.
pub const ROOT_SPAN: &str = "tick";
/// Spans sent in one request at most.
const BATCH_SPANS: usize = 512;
/// Spans held while the collector cannot be reached; beyond that the oldest are dropped, counted.
const MAX_PENDING_SPANS: usize = 16_384;
/// Chains waiting for the exporter task; beyond that a chain is dropped, counted.
const QUEUE_CHAINS: usize = 4_096;
/// Chains whose exported span count is remembered (so a grown chain sends only what is new).
const REMEMBERED_CHAINS: usize = 65_536;

/// What the exporter did, for the metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub spans_exported: AtomicU64,
    /// Spans dropped: the queue was full or the collector was unreachable for too long.
    pub spans_dropped: AtomicU64,
    /// Export requests that failed (each retried while its spans are held).
    pub export_failures: AtomicU64,
}

/// The OTLP span id of the `occurrence`-th span of `stage` in `chain` (`stage` `None`: the
/// root), the same in every process; never zero.
pub fn span_id(chain: ChainId, stage: Option<Stage>, occurrence: usize) -> [u8; 8] {
    // FNV-1a over the chain, the stage and the occurrence, then a SplitMix64 finaliser.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let stage = stage.map_or(0xff, |s| Stage::ALL.iter().position(|x| *x == s).unwrap_or(0xfe) as u8);
    let occurrence = (occurrence as u64).to_le_bytes();
    for byte in chain.to_bytes().iter().chain([stage].iter()).chain(occurrence.iter()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    hash.max(1).to_be_bytes()
}

fn attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }), ..KeyValue::default() }
}

/// The OTLP spans of a chain's spans from index `from` on (those not exported before): each
/// stage under the chain's root, and the root itself when this process read the tick and has not
/// exported it yet.
pub fn chain_spans(chain: ChainId, spans: &[StageSpan], from: usize) -> Vec<Span> {
    let trace_id = chain.to_bytes().to_vec();
    let root = span_id(chain, None, 0).to_vec();
    let mut seen: HashMap<Stage, usize> = HashMap::new();
    let mut out = Vec::new();
    for (index, span) in spans.iter().enumerate() {
        let occurrence = seen.entry(span.stage).or_default();
        let id = span_id(chain, Some(span.stage), *occurrence);
        *occurrence += 1;
        if index < from {
            continue;
        }
        let start = unix_ns(span.start_ns).max(0) as u64;
        let mut attributes = vec![attribute("mtml.stage", span.stage.name()), attribute("mtml.outcome", span.outcome.text())];
        let status = match span.outcome {
            Outcome::Ok => None,
            Outcome::Rejected(reason) => {
                attributes.push(attribute("mtml.rejected", reason));
                None
            }
            Outcome::Error(what) => Some(Status { message: what.to_owned(), code: StatusCode::Error as i32 }),
        };
        let kind = match span.stage {
            Stage::BridgeReceive => SpanKind::Consumer,
            Stage::BridgeSend => SpanKind::Producer,
            _ => SpanKind::Internal,
        };
        out.push(Span {
            trace_id: trace_id.clone(),
            span_id: id.to_vec(),
            parent_span_id: root.clone(),
            name: span.stage.name().to_owned(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + span.duration_ns,
            attributes,
            status,
            ..Span::default()
        });
    }
    // The root is the receipt's: whoever read the tick exports it, once, over what it saw.
    let received = spans.iter().find(|s| s.stage == Stage::BridgeReceive);
    if let Some(received) = received.filter(|_| from == 0) {
        let start = unix_ns(received.start_ns).max(0) as u64;
        let end = spans.iter().map(|s| unix_ns(s.start_ns).max(0) as u64 + s.duration_ns).max().unwrap_or(start);
        out.insert(
            0,
            Span {
                trace_id,
                span_id: root,
                name: ROOT_SPAN.to_owned(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                ..Span::default()
            },
        );
    }
    out
}

/// One export request: `spans` of the process named `service`.
pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", service), attribute("service.version", env!("CARGO_PKG_VERSION"))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "mtml".to_owned(), version: env!("CARGO_PKG_VERSION").to_owned(), ..InstrumentationScope::default() }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Where chains are offered for export.
#[derive(Clone)]
pub struct Exporter {
    queue: mpsc::Sender<(ChainId, Vec<StageSpan>)>,
    stats: Arc<ExportStats>,
}

impl Exporter {
    /// Starts exporting to the OTLP/gRPC `endpoint` (`http://collector:4317`) as `service`;
    /// the task ends when every [`Exporter`] is dropped, after a last attempt to send what it holds.
    pub fn spawn(endpoint: &str, service: &str) -> Result<(Self, JoinHandle<()>), tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let (queue, chains) = mpsc::channel(QUEUE_CHAINS);
        let stats = Arc::new(ExportStats::default());
        let task = tokio::spawn(export(TraceServiceClient::new(channel), service.to_owned(), chains, Arc::clone(&stats)));
        Ok((Self { queue, stats }, task))
    }

    /// Offers a chain (all its spans so far) for export; never waits.
    pub fn offer(&self, chain: ChainId, spans: Vec<StageSpan>) {
        let count = spans.len() as u64;
        if self.queue.try_send((chain, spans)).is_err() {
            self.stats.spans_dropped.fetch_add(count, Relaxed);
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> Arc<ExportStats> {
        Arc::clone(&self.stats)
    }
}

async fn export(
    mut client: TraceServiceClient<tonic::transport::Channel>,
    service: String,
    mut chains: mpsc::Receiver<(ChainId, Vec<StageSpan>)>,
    stats: Arc<ExportStats>,
) {
    let mut exported: HashMap<ChainId, usize> = HashMap::new();
    let mut remembered: VecDeque<ChainId> = VecDeque::new();
    let mut pending: VecDeque<Span> = VecDeque::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            received = chains.recv(), if open => match received {
                Some((chain, spans)) => {
                    let from = exported.get(&chain).copied().unwrap_or(0);
                    if from == 0 {
                        remembered.push_back(chain);
                        if remembered.len() > REMEMBERED_CHAINS && let Some(old) = remembered.pop_front() {
                            exported.remove(&old);
                        }
                    }
                    exported.insert(chain, spans.len().max(from));
                    pending.extend(chain_spans(chain, &spans, from));
                    let over = pending.len().saturating_sub(MAX_PENDING_SPANS);
                    pending.drain(..over);
                    stats.spans_dropped.fetch_add(over as u64, Relaxed);
                    if pending.len() < BATCH_SPANS {
                        continue;
                    }
                }
                None => open = false,
            },
            _ = every.tick() => {}
        }
        while !pending.is_empty() {
            let batch: Vec<Span> = pending.iter().take(BATCH_SPANS).cloned().collect();
            let sent = batch.len();
            match client.export(request(&service, batch)).await {
                Ok(_) => {
                    pending.drain(..sent);
                    stats.spans_exported.fetch_add(sent as u64, Relaxed);
                }
                Err(status) => {
                    stats.export_failures.fetch_add(1, Relaxed);
                    tracing::warn!(code = ?status.code(), message = status.message(), held = pending.len(), "OTLP export failed; retrying");
                    if !open {
                        // Stopping and the collector is not there: what is held is lost, counted.
                        stats.spans_dropped.fetch_add(pending.len() as u64, Relaxed);
                        pending.clear();
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn span(stage: Stage, start_ns: u64, duration_ns: u64, outcome: Outcome) -> StageSpan {
        StageSpan { stage, start_ns, duration_ns, outcome }
    }

    #[test]
    fn a_chain_is_a_trace_with_its_stages_under_one_root() {
        let chain = mtml_core::ChainIdGenerator::with_prefix(3).next_id();
        let spans = [
            span(Stage::BridgeReceive, 1_000, 100, Outcome::Ok),
            span(Stage::Ingest, 1_200, 50, Outcome::Ok),
            span(Stage::Risk, 1_300, 10, Outcome::Rejected("max_drawdown")),
        ];
        let otlp = chain_spans(chain, &spans, 0);
        assert_eq!(otlp.len(), 4);
        let root = &otlp[0];
        assert_eq!((root.name.as_str(), root.trace_id.as_slice()), (ROOT_SPAN, &chain.to_bytes()[..]));
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.end_time_unix_nano - root.start_time_unix_nano, 310);
        for child in &otlp[1..] {
            assert_eq!(child.parent_span_id, root.span_id);
            assert_eq!(child.trace_id, root.trace_id);
        }
        let names: Vec<&str> = otlp.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tick", "bridge_receive", "ingest", "risk"]);
        assert!(otlp[3].attributes.contains(&attribute("mtml.rejected", "max_drawdown")));
        // The pipeline's process, without the receipt, names the same root and no root of its own.
        let pipeline_part = chain_spans(chain, &spans[1..], 0);
        assert_eq!(pipeline_part.len(), 2);
        assert_eq!(pipeline_part[0].parent_span_id, root.span_id);
        assert_eq!(pipeline_part[0].span_id, otlp[2].span_id);
        // A chain handed out again sends only its new spans.
        assert_eq!(chain_spans(chain, &spans, 2).iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["risk"]);
    }

    #[test]
    fn an_error_is_an_error_status_and_span_ids_differ() {
        let chain = mtml_core::ChainIdGenerator::with_prefix(4).next_id();
        let otlp = chain_spans(chain, &[span(Stage::Inference, 10, 5, Outcome::Error("inference_error"))], 0);
        assert_eq!(otlp[0].status, Some(Status { message: "inference_error".into(), code: StatusCode::Error as i32 }));
        let ids: std::collections::HashSet<[u8; 8]> =
            Stage::ALL.iter().flat_map(|s| (0..3).map(move |n| span_id(chain, Some(*s), n))).chain([span_id(chain, None, 0)]).collect();
        assert_eq!(ids.len(), Stage::ALL.len() * 3 + 1);
    }
}

//! The metrics and health endpoints of an instance: what `mtml_metrics` serves, gathered at
//! each scrape from the pipeline (between two ticks), the bridge's counters, the stores and the
//! chain log.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use mtml_bridge::BridgeStats;
use mtml_core::{ChainLog, LatencyBuckets};
use mtml_decision::TradingState;
use mtml_metrics::{Endpoints, Exposition, HistogramSample, LATENCY_BUCKETS_SECONDS};
use mtml_pipeline::{PipelineHandle, PipelineSnapshot};

use crate::stores::{StoresReport, StoresWatch};

/// What the endpoints read: the parts this process runs (`mtml run` all of them, `mtml
/// bridge` the bridge, `mtml pipeline` the pipeline).
#[derive(Clone)]
pub struct Sources {
    /// The running pipeline and its stores.
    pub pipeline: Option<(PipelineHandle, StoresWatch)>,
    /// The bridge's counters.
    pub bridge: Option<Arc<BridgeStats>>,
    /// Spans and latencies of every chain.
    pub chain_log: Arc<ChainLog>,
    /// The OTLP exporter's counters, when chains are exported.
    pub otlp: Option<Arc<mtml_telemetry::ExportStats>>,
    /// Who may call, and the refusals so far.
    pub guard: Arc<mtml_auth::Guard>,
}

fn histogram(buckets: &LatencyBuckets) -> HistogramSample {
    HistogramSample {
        buckets: buckets.at_most.iter().map(|(ns, count)| (*ns as f64 / 1e9, *count)).collect(),
        count: buckets.count,
        sum: buckets.sum_ns / 1e9,
    }
}

/// The pipeline's and its stores' samples.
pub fn pipeline_samples(e: &mut Exposition, snapshot: &PipelineSnapshot, stores: &StoresReport) {
    let c = &snapshot.counters;
    e.sample("mtml_ticks_ingested_total", &[], c.ticks_ingested as f64);
    for (reason, n) in &c.ticks_rejected {
        e.sample("mtml_ticks_refused_total", &[("reason", reason)], *n as f64);
    }
    e.sample("mtml_bars_total", &[], c.bars as f64);
    e.sample("mtml_feature_vectors_total", &[], c.feature_vectors as f64);
    e.sample("mtml_predictions_total", &[("role", "champion")], c.predictions as f64);
    e.sample("mtml_predictions_total", &[("role", "challenger")], c.challenger_predictions as f64);
    e.sample("mtml_inference_errors_total", &[], (c.inference_errors + c.challenger_errors) as f64);
    for (model, m) in &c.by_model {
        e.sample("mtml_model_predictions_total", &[("model", model)], m.predictions as f64);
        e.sample("mtml_model_inference_errors_total", &[("model", model)], m.errors as f64);
        e.sample("mtml_model_inference_seconds_total", &[("model", model)], m.inference_ns as f64 / 1e9);
    }
    if let Some(comparison) = &snapshot.comparison {
        e.sample("mtml_rollout_agreement", &[("what", "class")], comparison.class_agreement);
        e.sample("mtml_rollout_agreement", &[("what", "signal")], comparison.signal_agreement);
        e.sample("mtml_rollout_probability_psi", &[], comparison.probability_psi);
        for side in [&comparison.champion, &comparison.challenger] {
            if let Some(hit_rate) = side.hit_rate {
                e.sample("mtml_model_hit_rate", &[("model", &side.model)], hit_rate);
            }
        }
    }
    for (feature, psi) in &c.feature_psi {
        e.sample("mtml_feature_psi", &[("feature", feature)], *psi);
    }
    e.sample("mtml_feature_drift_alerts_total", &[], c.drift_alerts as f64);
    e.sample("mtml_inbox_depth", &[], snapshot.inbox_depth as f64);
    e.sample("mtml_target_changes_total", &[], c.target_changes as f64);
    for (reason, n) in &c.risk_rejections {
        e.sample("mtml_risk_refusals_total", &[("reason", reason)], *n as f64);
    }
    let x = &snapshot.execution;
    for (event, n) in [("sent", x.orders_sent), ("acked", x.acks), ("filled", x.fills), ("rejected", x.rejects), ("outcome_unknown", x.outcome_unknown)] {
        e.sample("mtml_orders_total", &[("event", event)], n as f64);
    }
    e.sample("mtml_filled_lots_total", &[], x.filled_lots);
    for (symbol, (price_lots, lots)) in &x.slippage_by_symbol {
        if *lots > 0.0 {
            e.sample("mtml_average_slippage", &[("symbol", symbol.as_str())], price_lots / lots);
        }
    }
    e.sample("mtml_reconciliation_differences_total", &[], x.reconciliation_differences as f64);
    e.sample("mtml_orders_in_flight", &[], snapshot.orders_in_flight as f64);
    for state in [TradingState::Active, TradingState::Reducing, TradingState::Halted] {
        e.sample("mtml_trading_state", &[("state", state.name())], f64::from(u8::from(snapshot.trading_state == state)));
    }
    e.sample("mtml_equity", &[], snapshot.equity);
    e.sample("mtml_realized_pnl", &[], snapshot.realized_pnl);
    e.sample("mtml_unrealized_pnl", &[], snapshot.unrealized_pnl);
    e.sample("mtml_drawdown", &[], snapshot.drawdown);
    let mut positions: Vec<_> = snapshot.positions.iter().collect();
    positions.sort_by(|a, b| a.0.cmp(b.0));
    for (symbol, position) in positions {
        e.sample("mtml_position_lots", &[("symbol", symbol.as_str())], position.lots);
    }
    e.sample("mtml_store_write_failures_total", &[("store", "online")], stores.online_write_failures as f64);
    e.sample("mtml_store_down", &[("store", "online")], f64::from(u8::from(stores.online_down_at_end)));
    if stores.history.is_some() {
        e.sample("mtml_store_write_failures_total", &[("store", "history")], stores.history_write_failures as f64);
        e.sample("mtml_store_down", &[("store", "history")], f64::from(u8::from(stores.history_down_at_end)));
        e.sample("mtml_history_backlog_points", &[], stores.history_backlog as f64);
    }
}

/// The bridge's samples.
pub fn bridge_samples(e: &mut Exposition, bridge: &BridgeStats) {
    e.sample("mtml_terminals_connected", &[], bridge.connected.load(Relaxed) as f64);
    e.sample("mtml_terminal_connections_total", &[], bridge.connections.load(Relaxed) as f64);
    e.sample("mtml_terminal_ticks_total", &[], bridge.ticks.load(Relaxed) as f64);
    e.sample("mtml_sequence_gaps_total", &[], bridge.sequence_gaps.load(Relaxed) as f64);
    e.sample("mtml_ticks_dropped_total", &[], bridge.ticks_dropped.load(Relaxed) as f64);
    e.sample("mtml_protocol_errors_total", &[], bridge.protocol_errors.load(Relaxed) as f64);
    for (reason, count) in [("hello", &bridge.refused), ("connection_limit", &bridge.connections_refused), ("hello_delayed", &bridge.hellos_delayed), ("orders_in_flight", &bridge.orders_refused_in_flight)] {
        e.sample("mtml_terminal_refusals_total", &[("reason", reason)], count.load(Relaxed) as f64);
    }
}

/// The chain log's latency histograms.
pub fn chain_samples(e: &mut Exposition, chain_log: &ChainLog) {
    let bounds: Vec<u64> = LATENCY_BUCKETS_SECONDS.iter().map(|s| (s * 1e9).round() as u64).collect();
    for (stage, buckets) in chain_log.stage_buckets(&bounds) {
        e.histogram("mtml_stage_latency_seconds", &[("stage", stage.name())], &histogram(&buckets));
    }
    e.histogram("mtml_tick_to_order_seconds", &[], &histogram(&chain_log.tick_to_order_buckets(&bounds)));
}

/// The endpoints over `sources`: ready while the pipeline answers and no store is down; the
/// answer says how many terminals are connected to a bridge in this process.
/// Serves the endpoints of `sources` on `listener`, over TLS when `[tls]` has a certificate,
/// until `stop`; a failure is logged.
pub async fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, sources: Sources, stop: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Err(error) = mtml_metrics::serve(listener, tls, endpoints(sources), stop).await {
        tracing::error!(%error, "metrics server failed");
    }
}

fn endpoints(sources: Sources) -> Endpoints {
    let gather_sources = sources.clone();
    Endpoints {
        guard: Arc::clone(&sources.guard),
        gather: Arc::new(move || {
            let s = gather_sources.clone();
            Box::pin(async move {
                let mut e = Exposition::new();
                if let Some((pipeline, stores)) = &s.pipeline {
                    match pipeline.snapshot().await {
                        Ok(snapshot) => pipeline_samples(&mut e, &snapshot, &stores.report()),
                        Err(stopped) => return format!("# {stopped}\n"),
                    }
                }
                if let Some(bridge) = &s.bridge {
                    bridge_samples(&mut e, bridge);
                }
                chain_samples(&mut e, &s.chain_log);
                if let Some(otlp) = &s.otlp {
                    e.sample("mtml_otlp_spans_exported_total", &[], otlp.spans_exported.load(Relaxed) as f64);
                    e.sample("mtml_otlp_spans_dropped_total", &[], otlp.spans_dropped.load(Relaxed) as f64);
                    e.sample("mtml_otlp_export_failures_total", &[], otlp.export_failures.load(Relaxed) as f64);
                }
                for (reason, count) in s.guard.refusals().snapshot() {
                    e.sample("mtml_auth_refusals_total", &[("reason", reason)], count as f64);
                }
                e.text()
            })
        }),
        ready: Arc::new(move || {
            let s = sources.clone();
            Box::pin(async move {
                let mut found = String::new();
                if let Some((pipeline, stores)) = &s.pipeline {
                    pipeline.snapshot().await.map_err(|stopped| stopped.to_string())?;
                    let stores = stores.report();
                    if stores.online_down_at_end {
                        return Err(format!("the online feature store {} is down", stores.online));
                    }
                    if stores.history_down_at_end {
                        return Err(format!("the history store {} is down", stores.history.unwrap_or_default()));
                    }
                    found.push_str("pipeline: answering, model loaded, stores up\n");
                }
                if let Some(bridge) = &s.bridge {
                    // A bridge with no terminal serves (one may connect any moment), and says so.
                    match bridge.connected.load(Relaxed) {
                        0 => found.push_str("terminals: none connected\n"),
                        n => found.push_str(&format!("terminals: {n} connected\n")),
                    }
                }
                Ok(found)
            })
        }),
    }
}

//! What the pipeline counts and reports: progress other threads read while it runs, counters
//! by stage, and everything it knew when it stopped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use mtml_core::{Bar, Symbol};
use mtml_decision::{ExecutionStats, Position, TradingState};
use mtml_rollout::ComparisonReport;
use serde::Serialize;
use tokio::sync::Notify;

/// Progress readable from other threads while the pipeline runs.
#[derive(Debug, Default)]
pub struct PipelineProgress {
    /// Ticks taken off the inbox (accepted or rejected).
    pub ticks_seen: Arc<AtomicU64>,
    /// Notified whenever `ticks_seen` advances (replay pacing waits on it).
    pub advanced: Arc<Notify>,
    /// Orders awaiting their outcome.
    pub orders_in_flight: AtomicU64,
}

/// One model version's inference in the pipeline.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ModelCounters {
    /// Predictions made.
    pub predictions: u64,
    /// Predictions that failed.
    pub errors: u64,
    /// Time spent predicting, ns.
    pub inference_ns: u64,
}

impl PipelineCounters {
    /// Counts a model's prediction (`ok` or not) that took `ns`.
    pub(crate) fn model_ran(&mut self, label: &str, ok: bool, ns: u64) {
        let model = match self.by_model.get_mut(label) {
            Some(model) => model,
            None => self.by_model.entry(label.to_owned()).or_default(),
        };
        model.predictions += u64::from(ok);
        model.errors += u64::from(!ok);
        model.inference_ns += ns;
    }
}

/// Counters of the pipeline, by stage.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PipelineCounters {
    /// Ticks taken off the inbox.
    pub ticks_seen: u64,
    /// Ticks accepted by ingestion.
    pub ticks_ingested: u64,
    /// Ticks refused, by reason.
    pub ticks_rejected: BTreeMap<&'static str, u64>,
    /// Accepted ticks with ask below bid.
    pub crossed_quotes: u64,
    /// Accepted ticks with ask equal to bid.
    pub locked_quotes: u64,
    /// M1 bars built.
    pub bars: u64,
    /// Wider bars (the configured timeframes) built.
    pub wider_bars: u64,
    /// Feature vectors computed (after warm-up).
    pub feature_vectors: u64,
    /// Model predictions.
    pub predictions: u64,
    /// Predictions that failed.
    pub inference_errors: u64,
    /// Challenger predictions (during a rollout).
    pub challenger_predictions: u64,
    /// Of those, the ones acted on (a canary's share).
    pub challenger_acted: u64,
    /// Challenger predictions that failed (the champion's was used).
    pub challenger_errors: u64,
    /// Inference by model version (`name:version`).
    pub by_model: BTreeMap<String, ModelCounters>,
    /// Each feature's PSI against the training distribution (when one is configured), at the
    /// last check.
    pub feature_psi: BTreeMap<String, f64>,
    /// Times a feature's PSI went above the drift threshold.
    pub drift_alerts: u64,
    /// Orders sent longer after their tick arrived than the slow-order threshold.
    pub slow_orders: u64,
    /// With fills in market time (a replay), outcomes that had not come when due: such a run
    /// may differ from the others.
    pub late_outcomes: u64,
    /// Model sets swapped in while running (promote, rollout, rollback).
    pub model_swaps: u64,
    /// Orders refused because the model acted on was flagged stale.
    pub stale_model_flags: u64,
    /// Target position changes.
    pub target_changes: u64,
    /// Orders refused by risk, by reason.
    pub risk_rejections: BTreeMap<&'static str, u64>,
    /// Trading state changes, in order, as announced.
    pub state_changes: Vec<StateChangeReport>,
}

/// What a running pipeline knows now, answered between two ticks (for metrics).
#[derive(Debug, Clone)]
pub struct PipelineSnapshot {
    /// Counters by stage.
    pub counters: PipelineCounters,
    /// Execution's counters.
    pub execution: ExecutionStats,
    /// The trading state.
    pub trading_state: TradingState,
    /// Equity: starting equity plus realised and unrealised PnL, quote currency.
    pub equity: f64,
    /// Realised PnL over every symbol.
    pub realized_pnl: f64,
    /// Open positions marked at the last mids.
    pub unrealized_pnl: f64,
    /// Equity below its high.
    pub drawdown: f64,
    /// Ticks waiting in the pipeline's inbox.
    pub inbox_depth: usize,
    /// Champion against challenger, during a rollout.
    pub comparison: Option<ComparisonReport>,
    /// Positions by symbol.
    pub positions: HashMap<Symbol, Position>,
    /// Orders awaiting their outcome.
    pub orders_in_flight: usize,
    /// The last mid of each symbol (what unrealised PnL is marked at).
    pub marks: HashMap<Symbol, f64>,
}

/// A trading state change as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StateChangeReport {
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
    /// Why.
    pub reason: String,
    /// Market time, UTC epoch ms.
    pub at_ms: i64,
}

/// Everything the pipeline knew when it stopped.
#[derive(Debug, Clone)]
pub struct PipelineOutcome {
    /// Counters.
    pub counters: PipelineCounters,
    /// Execution counters.
    pub execution: ExecutionStats,
    /// Positions by symbol.
    pub positions: HashMap<Symbol, Position>,
    /// Last mid price by symbol, for marking positions.
    pub last_mid: HashMap<Symbol, f64>,
    /// Bars still open at the end, closed by the flush.
    pub final_bars: Vec<Bar>,
    /// Champion against challenger, if one was on trial at the end.
    pub comparison: Option<ComparisonReport>,
    /// The models serving at the end: the champion, and the challenger with its role.
    pub models: String,
    /// The trading state at the end.
    pub trading_state: TradingState,
}


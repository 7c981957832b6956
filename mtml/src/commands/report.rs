//! The replay report: counts that add up, PnL, latencies, and one chain stage by stage.

use mtml_decision::figures::{Figures, FiguresBuilder};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use mtml_core::chain::LatencySummary;
use mtml_core::{ChainId, ChainLog, StageSpan};
use mtml_decision::LOT_SIZE;
use serde::Serialize;

use mtml_pipeline::{PipelineCounters, PipelineOutcome};
use mtml_rollout::ComparisonReport;

/// Everything a replay measured. Serialised, flat, as the `--report` JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was replayed, and how.
    #[serde(flatten)]
    pub run: ReplayRun,
    /// The pipeline's counters (`bars` includes the bars still open at the end).
    #[serde(flatten)]
    pub pipeline: PipelineCounters,
    /// Orders written to the terminal.
    pub orders_sent: u64,
    /// Orders the terminal acknowledged.
    pub acks: u64,
    /// Fills reported by the terminal.
    pub fills: u64,
    /// Orders refused by the terminal or the bridge.
    pub order_rejects: u64,
    /// Positions found different from the terminal's on connecting (for example, recovered from
    /// the journal of an earlier run), and corrected to the terminal's.
    pub reconciliation_differences: u64,
    /// The bridge's counters.
    pub bridge: BridgeReport,
    /// How the feature stores fared: failed writes, what was down at the end.
    pub stores: crate::stores::StoresReport,
    /// Trading state at the end: ACTIVE, REDUCING or HALTED.
    pub trading_state: String,
    /// Profit and loss in the quote currency.
    pub pnl: Pnl,
    /// Net position per symbol at the end, lots: mtml's view and the terminal's.
    pub positions: BTreeMap<String, PositionReport>,
    /// Every deal the terminal executed, in order.
    pub deals: Vec<DealReport>,
    /// Return, Sharpe and Sortino, drawdown, round trips, exposure and costs.
    pub figures: Figures,
    /// Average slippage of fills against the decision price, in points of each symbol's digits
    /// (0.00001 for EURUSD, 0.001 for USDJPY); positive is worse than decided.
    pub avg_slippage_points: f64,
    /// Latency of each stage.
    pub latency: BTreeMap<&'static str, LatencySummary>,
    /// From the bridge reading a tick to the bridge writing the order it caused.
    pub tick_to_order_us: LatencySummary,
    /// One chain that went from tick to fill, stage by stage.
    pub example_chain: Option<ExampleChain>,
    /// Ticks per second of wall-clock time.
    pub ticks_per_sec: f64,
    /// `ticks_read == ticks_ingested + sum(ticks_rejected)`.
    pub counts_add_up: bool,
    /// The models serving at the end.
    pub models: String,
    /// Champion against challenger, if one was on trial.
    pub rollout: Option<ComparisonReport>,
}

/// PnL in the quote currency (USD for EURUSD).
#[derive(Debug, Clone, Serialize)]
pub struct Pnl {
    /// From closed lots.
    pub realized: f64,
    /// Open lots marked at the last mid.
    pub unrealized: f64,
    /// Sum.
    pub total: f64,
}

/// A symbol's position as both sides see it.
#[derive(Debug, Clone, Serialize)]
pub struct PositionReport {
    /// From mtml's fills.
    pub mtml_lots: f64,
    /// From the terminal's deals.
    pub terminal_lots: f64,
}

/// A chain, stage by stage, offsets from the first stage.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleChain {
    /// The chain id (W3C trace id).
    pub chain_id: ChainId,
    /// Stages in the order they were recorded.
    pub stages: Vec<ChainStage>,
}

/// One stage of [`ExampleChain`].
#[derive(Debug, Clone, Serialize)]
pub struct ChainStage {
    /// Stage name.
    pub stage: &'static str,
    /// Start, microseconds after the chain's first stage started.
    pub offset_us: f64,
    /// Duration, microseconds.
    pub duration_us: f64,
}

impl ExampleChain {
    /// Builds the example from recorded spans.
    pub fn from_spans(chain_id: ChainId, spans: &[StageSpan]) -> Self {
        let origin = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let mut spans = spans.to_vec();
        spans.sort_by_key(|s| s.start_ns);
        let us = |ns: u64| (ns as f64 / 10.0).round() / 100.0;
        Self {
            chain_id,
            stages: spans
                .iter()
                .map(|s| ChainStage {
                    stage: s.stage.name(),
                    offset_us: us(s.start_ns - origin),
                    duration_us: us(s.duration_ns),
                })
                .collect(),
        }
    }
}

/// What was replayed, and how: the parts of the report that come from outside the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRun {
    /// The tick file.
    pub input: String,
    /// Symbols replayed.
    pub symbols: Vec<String>,
    /// Bridge-to-ingestion transport (`in-process`, `grpc`), or `none` in a backtest (which
    /// has no bridge).
    pub transport: &'static str,
    /// Model name and the feature set it takes.
    pub model: String,
    /// Rows read from the file.
    pub ticks_read: u64,
    /// Ticks the terminal simulator sent over the bridge.
    pub ticks_sent: u64,
    /// Wall-clock duration of the replay.
    pub wall_time_secs: f64,
    /// The process's peak resident memory at the end, MB (Linux; `None` elsewhere).
    pub peak_memory_mb: Option<f64>,
}

/// This process's peak resident memory so far, MB (`VmHWM`; Linux only).
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// What the bridge and the terminal saw, for [`Report::build`].
#[derive(Debug, Clone, Default)]
pub struct TerminalSide {
    /// Orders the bridge wrote.
    pub orders_sent: u64,
    /// Terminal positions by symbol.
    pub positions: BTreeMap<String, f64>,
    /// The terminal's deals, in order.
    pub deals: Vec<DealReport>,
    /// The business figures of those deals against the file's prices.
    pub figures: Figures,
    /// The bridge's counters.
    pub bridge: BridgeReport,
    /// Price digits by symbol (for slippage in points).
    pub digits: BTreeMap<String, u8>,
    /// How the feature stores fared.
    pub stores: crate::stores::StoresReport,
}

/// A deal the terminal executed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DealReport {
    /// The order's number in the run: its client order id without the session prefix, which
    /// differs every run (`m5dcdca78-7` is order 7).
    pub order: u64,
    /// Broker symbol.
    pub symbol: String,
    /// Market time of the quote it filled at, UTC ms.
    pub time_msc: i64,
    /// Lots, positive for a buy.
    pub lots: f64,
    /// Price.
    pub price: f64,
}

impl DealReport {
    /// A deal of the order `client_order_id`.
    pub fn new(client_order_id: &str, symbol: &str, time_msc: i64, lots: f64, price: f64) -> Self {
        let order = client_order_id.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or(0);
        Self { order, symbol: symbol.to_owned(), time_msc, lots, price }
    }
}

/// A quote's time, symbol (an index into the run's symbols) and mid: what the figures mark the
/// positions at.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    time_msc: i64,
    symbol: u16,
    mid: f64,
}

impl Mark {
    /// The mark of a quote of `symbol`, one of `symbols`.
    pub fn new(symbols: &[String], symbol: &str, time_msc: i64, bid: f64, ask: f64) -> Self {
        let symbol = symbols.iter().position(|s| s == symbol).and_then(|i| u16::try_from(i).ok()).unwrap_or(0);
        Self { time_msc, symbol, mid: (bid + ask) / 2.0 }
    }
}

/// The figures of `deals` against every quote's mid.
pub fn figures_of(mut figures: FiguresBuilder, deals: &[DealReport], marks: &[Mark], symbols: &[String]) -> Figures {
    for deal in deals {
        figures.deal(deal.time_msc, &deal.symbol, deal.lots, deal.price);
    }
    for mark in marks {
        figures.mark(mark.time_msc, &symbols[usize::from(mark.symbol)], mark.mid);
    }
    figures.finish()
}

/// The bridge's counters at the end of a replay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BridgeReport {
    /// Terminal connections accepted.
    pub connections: u64,
    /// Connections closed on bad input.
    pub protocol_errors: u64,
    /// Sequence gaps seen.
    pub sequence_gaps: u64,
    /// Ticks dropped under `bridge.backpressure = "drop-newest"` (always 0 with "block").
    pub ticks_dropped: u64,
    /// Orders refused before leaving (normalisation, no terminal).
    pub orders_refused: u64,
    /// Books the terminal sent in answer to a SYNC, reconciled (periodic reconciliation).
    pub syncs_completed: u64,
}

impl BridgeReport {
    /// Reads the bridge's live counters.
    pub fn from_stats(stats: &mtml_bridge::BridgeStats) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Self {
            connections: stats.connections.load(Relaxed),
            protocol_errors: stats.protocol_errors.load(Relaxed),
            sequence_gaps: stats.sequence_gaps.load(Relaxed),
            ticks_dropped: stats.ticks_dropped.load(Relaxed),
            orders_refused: stats.orders_refused.load(Relaxed),
            syncs_completed: stats.syncs_completed.load(Relaxed),
        }
    }
}

impl Report {
    /// Assembles the report.
    pub fn build(
        run: ReplayRun,
        terminal: TerminalSide,
        outcome: &PipelineOutcome,
        chain_log: &ChainLog,
    ) -> Self {
        let c = &outcome.counters;
        let mut realized = 0.0;
        let mut unrealized = 0.0;
        let mut positions = BTreeMap::new();
        for (symbol, position) in &outcome.positions {
            realized += position.realized_pnl;
            if let Some(mid) = outcome.last_mid.get(symbol) {
                unrealized += position.unrealized_pnl(*mid);
            }
            positions.insert(
                symbol.to_string(),
                PositionReport {
                    mtml_lots: round(position.lots, 2),
                    terminal_lots: round(
                        terminal.positions.get(symbol.as_str()).copied().unwrap_or(0.0),
                        2,
                    ),
                },
            );
        }
        for (symbol, lots) in &terminal.positions {
            positions.entry(symbol.clone()).or_insert(PositionReport {
                mtml_lots: 0.0,
                terminal_lots: round(*lots, 2),
            });
        }
        let rejected: u64 = c.ticks_rejected.values().sum();
        let e = &outcome.execution;
        let mut pipeline = c.clone();
        pipeline.bars += outcome.final_bars.len() as u64;
        let ticks_per_sec = round(run.ticks_read as f64 / run.wall_time_secs.max(1e-9), 0);
        let counts_add_up = run.ticks_read == c.ticks_ingested + rejected;
        Self {
            run,
            pipeline,
            orders_sent: terminal.orders_sent,
            bridge: terminal.bridge.clone(),
            stores: terminal.stores.clone(),
            trading_state: outcome.trading_state.name().to_owned(),
            acks: e.acks,
            fills: e.fills,
            order_rejects: e.rejects,
            reconciliation_differences: e.reconciliation_differences,
            pnl: Pnl {
                realized: round(realized, 2),
                unrealized: round(unrealized, 2),
                total: round(realized + unrealized, 2),
            },
            positions,
            deals: terminal.deals.clone(),
            figures: terminal.figures.clone(),
            avg_slippage_points: round(
                e.average_slippage_points(|symbol| terminal.digits.get(symbol.as_str()).copied()).unwrap_or(0.0),
                2,
            ),
            latency: chain_log
                .stage_latencies()
                .into_iter()
                .map(|(stage, summary)| (stage.name(), summary))
                .collect(),
            tick_to_order_us: chain_log.tick_to_order(),
            example_chain: chain_log
                .first_filled_chain()
                .map(|(id, spans)| ExampleChain::from_spans(id, &spans)),
            ticks_per_sec,
            counts_add_up,
            models: outcome.models.clone(),
            rollout: outcome.comparison.clone(),
        }
    }

    /// The ticks refused, by reason: `50 unknown_symbol, 1 wide_spread`, or `none`.
    pub fn rejections_text(&self) -> String {
        counts_text(&self.pipeline.ticks_rejected)
    }

    /// A readable summary for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rejected: u64 = self.pipeline.ticks_rejected.values().sum();
        let backtest = self.run.transport == "none";
        let _ = writeln!(s, "mtml {} of {}", if backtest { "backtest" } else { "replay" }, self.run.input);
        let _ = writeln!(s, "  symbols {} via {} transport, model {}", self.run.symbols.join(","), self.run.transport, self.run.model);
        let _ = writeln!(
            s,
            "  ticks    read {}  sent {}  ingested {}  rejected {} ({})  (crossed {}, locked {})  counts add up: {}",
            self.run.ticks_read, self.run.ticks_sent, self.pipeline.ticks_ingested, rejected, self.rejections_text(),
            self.pipeline.crossed_quotes, self.pipeline.locked_quotes, if self.counts_add_up { "yes" } else { "NO" }
        );
        let _ = writeln!(
            s,
            "  pipeline bars {}  feature vectors {}  predictions {}  target changes {}",
            self.pipeline.bars, self.pipeline.feature_vectors, self.pipeline.predictions, self.pipeline.target_changes
        );
        let _ = writeln!(s, "  models   {}", self.models);
        if self.pipeline.challenger_predictions > 0 || self.pipeline.model_swaps > 0 {
            let _ = writeln!(
                s,
                "           challenger predictions {}  acted on {}  errors {}  model swaps {}",
                self.pipeline.challenger_predictions, self.pipeline.challenger_acted, self.pipeline.challenger_errors, self.pipeline.model_swaps
            );
        }
        if let Some(rollout) = &self.rollout {
            for line in rollout.text().lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
        let b = &self.bridge;
        if !backtest {
            let _ = writeln!(
                s,
                "  bridge   connections {}  protocol errors {}  sequence gaps {}  ticks dropped {}  orders refused {}  syncs {}",
                b.connections, b.protocol_errors, b.sequence_gaps, b.ticks_dropped, b.orders_refused, b.syncs_completed
            );
        }
        let _ = writeln!(
            s,
            "  orders   sent {}  acked {}  fills {}  rejected {}  risk rejections {}",
            self.orders_sent, self.acks, self.fills, self.order_rejects, counts_text(&self.pipeline.risk_rejections)
        );
        let _ = writeln!(s, "  risk     trading state {}", self.trading_state);
        let _ = writeln!(s, "  stores   {}", self.stores.text());
        for change in &self.pipeline.state_changes {
            let _ = writeln!(s, "           {} -> {} at {}: {}", change.from, change.to, mtml_core::text::utc(change.at_ms), change.reason);
        }
        for (symbol, p) in &self.positions {
            let _ = writeln!(s, "  position {symbol}: mtml {} lots, terminal {} lots", p.mtml_lots, p.terminal_lots);
        }
        let _ = writeln!(
            s,
            "  pnl      realized {:.2}  unrealized {:.2}  total {:.2} (quote currency, {} per lot)  avg slippage {} points",
            self.pnl.realized, self.pnl.unrealized, self.pnl.total, LOT_SIZE, self.avg_slippage_points
        );
        let f = &self.figures;
        let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        let minutes = |ms: f64| format!("{:.0} min", ms / 60_000.0);
        let _ = writeln!(
            s,
            "  figures  return {:.3}%  sharpe {}  sortino {} ({} hours)  max drawdown {:.2} ({:.3}%, {})  trades {}  hit rate {}  avg holding {}  exposure {:.0}%  lots {:.2}  commission {:.2}",
            f.return_pct,
            ratio(f.sharpe),
            ratio(f.sortino),
            f.hours,
            f.max_drawdown,
            f.max_drawdown_pct,
            minutes(f.max_drawdown_duration_ms as f64),
            f.trades,
            f.hit_rate.map_or_else(|| "-".to_owned(), |h| format!("{:.0}%", h * 100.0)),
            f.average_holding_ms.map_or_else(|| "-".to_owned(), minutes),
            f.exposure * 100.0,
            f.lots_traded,
            f.commission
        );
        let _ = writeln!(s, "  latency  (µs)          p50      p99      max    count");
        for (stage, l) in &self.latency {
            let _ = writeln!(s, "    {stage:<16} {:>8.2} {:>8.2} {:>8.2} {:>8}", l.p50_us, l.p99_us, l.max_us, l.count);
        }
        let t = &self.tick_to_order_us;
        let _ = writeln!(s, "    {:<16} {:>8.2} {:>8.2} {:>8.2} {:>8}", "tick_to_order", t.p50_us, t.p99_us, t.max_us, t.count);
        if let Some(chain) = &self.example_chain {
            let _ = writeln!(s, "  example chain {}", chain.chain_id);
            for stage in &chain.stages {
                let _ = writeln!(s, "    +{:>9.2} µs  {:<16} {:>8.2} µs", stage.offset_us, stage.stage, stage.duration_us);
            }
        }
        let memory = self.run.peak_memory_mb.map_or_else(String::new, |mb| format!(", peak memory {mb} MB"));
        let _ = writeln!(s, "  wall time {:.2} s, {} ticks/s{memory}", self.run.wall_time_secs, self.ticks_per_sec);
        s
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Counts by name, largest first: `50 unknown_symbol, 1 wide_spread`; `none` when empty.
fn counts_text(counts: &BTreeMap<&'static str, u64>) -> String {
    let mut sorted: Vec<(&str, u64)> = counts.iter().map(|(name, n)| (*name, *n)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if sorted.is_empty() {
        return "none".to_owned();
    }
    sorted.iter().map(|(name, n)| format!("{n} {name}")).collect::<Vec<_>>().join(", ")
}

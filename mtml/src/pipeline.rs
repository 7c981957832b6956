//! The tick pipeline: ingestion, features, inference, decision, risk and execution, on one
//! dedicated thread.
//!
//! One thread because every stage is synchronous CPU work of microseconds: handing a tick from
//! thread to thread would cost more than the stages. The thread runs its own single-threaded
//! runtime to wait on its two inboxes (ticks and execution events), so the shared async runtime
//! is never blocked by inference. Each stage records a span against the tick's chain id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mtml_bridge::OrderRouter;
use mtml_core::clock::monotonic_ns;
use mtml_core::{Bar, ChainLog, ExecutionEvent, Stage, Symbol, Tick};
use mtml_decision::{
    AccountSnapshot, SizingInputs, DecisionEngine, Execution, ExecutionStats, Facts, OrderCheck, Position, RiskEngine, TradingState,
};
use mtml_feature_store::{FeatureVector, HistoryPoint, HistoryWriter, OnlineWriter};
use mtml_journal::Record;
use crate::rollout::{CompareSettings, Comparison, ComparisonReport, Models, Predicted};
use mtml_ingestion::QuoteState;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::featurize::Featurizer;

fn side_name(side: mtml_core::Side) -> &'static str {
    match side {
        mtml_core::Side::Buy => "buy",
        mtml_core::Side::Sell => "sell",
    }
}

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

/// An operator command for the running pipeline.
#[derive(Debug)]
pub enum PipelineCommand {
    /// Change the trading state; the reply is the state in force afterwards, or why not.
    SetTradingState {
        /// The state wanted.
        state: TradingState,
        /// Why.
        reason: String,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Result<TradingState, String>>,
    },
    /// Report the trading state.
    GetTradingState {
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<TradingState>,
    },
    /// Swap in a new champion and challenger, fully loaded, between two ticks.
    SetModels {
        /// The new set.
        models: Box<Models>,
        /// Answered once the set is in force.
        reply: tokio::sync::oneshot::Sender<()>,
    },
    /// Report the champion/challenger comparison, if a challenger is on trial.
    Compare {
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Option<ComparisonReport>>,
    },
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

/// Where execution hands orders: the bridge's router in this process, or a channel to the gRPC
/// client of a bridge in another.
#[derive(Debug, Clone)]
pub enum OrderSink {
    /// The bridge runs in this process.
    Bridge(OrderRouter),
    /// The bridge runs elsewhere; `crate::remote::forward_orders` drains this channel.
    Remote(mpsc::UnboundedSender<mtml_core::OrderRequest>),
}

impl OrderSink {
    /// Hands an order on. Never blocks.
    pub fn submit(&self, order: mtml_core::OrderRequest) {
        match self {
            OrderSink::Bridge(router) => router.submit(order),
            OrderSink::Remote(channel) => {
                if let Err(error) = channel.send(order) {
                    tracing::error!(chain_id = %error.0.chain_id, "order channel to the bridge closed; order not sent");
                }
            }
        }
    }
}

/// The stages, owned by the pipeline thread.
pub struct Pipeline {
    /// Ingestion and features.
    pub featurizer: Featurizer,
    /// Where every feature vector goes for readers outside the tick path (never blocks).
    pub online: OnlineWriter,
    /// Where ticks, bars and feature vectors go for history (never blocks), if kept.
    pub history: Option<HistoryWriter>,
    /// The champion and, during a rollout, the challenger; this thread's own sessions.
    pub models: Models,
    /// Champion against challenger since the challenger came.
    pub comparison: Option<Comparison>,
    /// How the comparison scores signals.
    pub compare: CompareSettings,
    /// The stale-model guard: a model older than this (wall clock, ms) is flagged to risk.
    pub max_model_age_ms: Option<i64>,
    /// Predictions to targets.
    pub decision: DecisionEngine,
    /// Pre-trade checks.
    pub risk: RiskEngine,
    /// Orders, fills, positions.
    pub execution: Execution,
    /// Where orders go.
    pub orders: OrderSink,
    /// Spans and latencies.
    pub chain_log: Arc<ChainLog>,
    /// Shared progress.
    pub progress: Arc<PipelineProgress>,
    /// Per symbol, the last target an order was attempted for.
    pub acted_target: HashMap<Symbol, f64>,
    /// Equity before any trade, quote currency; equity is this plus realised and unrealised PnL.
    pub starting_equity: f64,
    /// Last mid per symbol.
    pub last_mid: HashMap<Symbol, f64>,
    /// Where journal records go (the writer task), if journaling: the records of one event
    /// together, so that the journal commits them together.
    pub journal: Option<mpsc::UnboundedSender<Vec<Record>>>,
    /// Market time of the last tick, for records of events that carry none.
    pub now_ms: i64,
    /// Equity marked at the last tick.
    pub equity: f64,
    /// The money of each terminal account, as last reported, for the margin check.
    pub accounts: HashMap<Arc<str>, AccountSnapshot>,
}

/// Index of `atr_14` in the feature vector, for volatility-targeted sizing.
const ATR_FEATURE: usize = 6;

impl Pipeline {
    /// Starts the pipeline thread. It stops when every tick sender is dropped, and returns what it
    /// knew.
    pub fn spawn(
        mut self,
        mut ticks: mpsc::Receiver<Tick>,
        mut events: mpsc::Receiver<ExecutionEvent>,
        mut commands: mpsc::UnboundedReceiver<PipelineCommand>,
    ) -> std::io::Result<std::thread::JoinHandle<PipelineOutcome>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        std::thread::Builder::new().name("mtml-pipeline".into()).spawn(move || {
            let mut counters = PipelineCounters::default();
            runtime.block_on(async {
                loop {
                    tokio::select! {
                        biased;
                        Some(event) = events.recv() => self.on_event(&event),
                        Some(command) = commands.recv() => self.on_command(command, &mut counters),
                        tick = ticks.recv() => match tick {
                            Some(tick) => self.on_tick(&tick, &mut counters),
                            None => break,
                        },
                    }
                }
                // Settle whatever the bridge reported before it closed.
                while let Ok(event) = events.try_recv() {
                    self.on_event(&event);
                }
            });
            PipelineOutcome {
                counters,
                execution: self.execution.stats().clone(),
                positions: self.execution.positions().clone(),
                last_mid: self.last_mid,
                final_bars: self.featurizer.flush_bars(),
                comparison: self.comparison.as_ref().map(Comparison::report),
                models: self.models.describe(),
                trading_state: self.risk.state(),
            }
        })
    }

    fn on_event(&mut self, event: &ExecutionEvent) {
        if let ExecutionEvent::Account { account, leverage, free_margin, .. } = event {
            let snapshot = AccountSnapshot { free_margin: *free_margin, leverage: f64::from(*leverage) };
            self.accounts.insert(Arc::clone(account), snapshot);
            return;
        }
        if let (ExecutionEvent::Filled(fill), Some(comparison)) = (event, &mut self.comparison) {
            comparison.on_fill(fill);
        }
        let before = match event {
            ExecutionEvent::Filled(fill) => Some((
                self.execution.position(&fill.symbol),
                self.execution.filled_of(&fill.client_order_id) + fill.volume,
            )),
            _ => None,
        };
        self.execution.on_event(event);
        self.progress.orders_in_flight.store(self.execution.in_flight_count() as u64, Ordering::Release);
        if self.journal.is_some() {
            self.journal_event(event, before);
        }
    }

    fn on_command(&mut self, command: PipelineCommand, counters: &mut PipelineCounters) {
        match command {
            PipelineCommand::SetTradingState { state, reason, reply } => {
                let result = self.risk.set_state(state, &reason, self.now_ms).map(|()| self.risk.state());
                self.announce_state_changes(counters);
                let _ = reply.send(result);
            }
            PipelineCommand::GetTradingState { reply } => {
                let _ = reply.send(self.risk.state());
            }
            PipelineCommand::SetModels { models, reply } => {
                self.set_models(*models);
                counters.model_swaps += 1;
                let _ = reply.send(());
            }
            PipelineCommand::Compare { reply } => {
                let _ = reply.send(self.comparison.as_ref().map(Comparison::report));
            }
        }
    }

    /// Puts a new model set in force. The comparison carries on while champion, challenger and
    /// role stay the same, and starts afresh when any of them changes.
    pub fn set_models(&mut self, models: Models) {
        let key = |m: &Models| m.challenger.as_ref().map(|c| (m.champion.label.clone(), c.slot.label.clone(), c.role.clone()));
        let same = key(&models) == key(&self.models) && self.comparison.is_some();
        if !same {
            self.comparison = Comparison::for_models(&models, self.compare);
        }
        tracing::info!(models = %models.describe(), revision = models.revision, "models in force");
        self.models = models;
    }

    fn record(&self, record: Record) {
        self.record_group(vec![record]);
    }

    /// Journals the records of one event, which the journal commits together or not at all.
    fn record_group(&self, group: Vec<Record>) {
        if let Some(journal) = &self.journal
            && !group.is_empty()
            && journal.send(group).is_err()
        {
            tracing::error!("journal writer stopped; record not written");
        }
    }

    /// Journals an execution event: the order's new state, and for a fill the fill and the
    /// position it left.
    fn journal_event(&self, event: &ExecutionEvent, before: Option<(Position, f64)>) {
        let mut filled = None;
        let mut group = Vec::new();
        let (id, state) = match event {
            ExecutionEvent::Acked { client_order_id, .. } => (client_order_id, "acknowledged"),
            ExecutionEvent::Rejected { client_order_id, .. } => (client_order_id, "rejected"),
            ExecutionEvent::OutcomeUnknown { client_order_id, .. } => (client_order_id, "unknown"),
            ExecutionEvent::Account { .. } => return,
            ExecutionEvent::TerminalPositions { executed, .. } => {
                // Orders the journal may not have (sent just before a crash): recorded if absent.
                for order in executed {
                    group.push(Record::ExecutedOrder {
                        client_order_id: order.client_order_id.clone(),
                        symbol: order.symbol.to_string(),
                        lots: order.lots,
                        average_price: order.average_price,
                        time_ms: order.time_msc,
                    });
                }
                for difference in self.execution.last_differences() {
                    let position = self.execution.position(&difference.symbol);
                    group.push(Record::Position {
                        symbol: difference.symbol.to_string(),
                        lots: position.lots,
                        average_price: position.average_price,
                        realized_pnl: position.realized_pnl,
                        at_ms: self.now_ms,
                    });
                }
                self.record_group(group);
                return;
            }
            ExecutionEvent::Filled(fill) => {
                let after = self.execution.position(&fill.symbol);
                let realized = after.realized_pnl - before.map_or(0.0, |(p, _)| p.realized_pnl);
                filled = before.map(|(_, f)| f);
                group.push(Record::Fill {
                    client_order_id: fill.client_order_id.clone(),
                    chain_id: fill.chain_id.to_string(),
                    ticket: i64::try_from(fill.ticket).unwrap_or(i64::MAX),
                    symbol: fill.symbol.to_string(),
                    side: side_name(fill.side).into(),
                    volume: fill.volume,
                    price: fill.price,
                    time_ms: fill.time_msc,
                    slippage: self.execution.last_fill_slippage(),
                    realized_pnl: realized,
                });
                group.push(Record::Position {
                    symbol: fill.symbol.to_string(),
                    lots: after.lots,
                    average_price: after.average_price,
                    realized_pnl: after.realized_pnl,
                    at_ms: fill.time_msc,
                });
                let state = self.execution.state_of(&fill.client_order_id).map_or("filled", |s| s.name());
                (&fill.client_order_id, state)
            }
        };
        let filled = filled.unwrap_or_else(|| self.execution.filled_of(id));
        group.push(Record::OrderState { client_order_id: id.clone(), state: state.into(), filled, at_ms: self.now_ms });
        self.record_group(group);
    }

    /// Runs one tick through every stage.
    pub fn on_tick(&mut self, tick: &Tick, counters: &mut PipelineCounters) {
        counters.ticks_seen += 1;
        let chain = tick.chain_id;
        let log = Arc::clone(&self.chain_log);
        let mut span = |stage, start: u64| {
            let end = monotonic_ns();
            log.record(chain, stage, start, end - start);
            end
        };
        let start = monotonic_ns();
        let ingested = self.featurizer.ingest(tick);
        let t = span(Stage::Ingest, start);
        let ingested = match ingested {
            Ok(ingested) => ingested,
            Err(reason) => {
                *counters.ticks_rejected.entry(reason.name()).or_default() += 1;
                tracing::debug!(chain_id = %chain, symbol = %tick.symbol, %reason, "tick rejected");
                self.tick_done();
                return;
            }
        };
        counters.ticks_ingested += 1;
        self.now_ms = tick.time_msc;
        self.last_mid.insert(tick.symbol.clone(), tick.mid());
        self.mark_equity(tick.time_msc, counters);
        match ingested.quote {
            QuoteState::Crossed => counters.crossed_quotes += 1,
            QuoteState::Locked => counters.locked_quotes += 1,
            QuoteState::Normal => {}
        }
        counters.bars += u64::from(ingested.closed_bar.is_some());
        counters.wider_bars += ingested.closed_wider.len() as u64;
        if let Some(history) = &self.history {
            history.push(HistoryPoint::tick(tick));
            for bar in ingested.closed_bar.iter().chain(&ingested.closed_wider) {
                history.push(HistoryPoint::bar(bar, tick.chain_id));
            }
        }
        self.decide(tick, ingested.closed_bar.as_ref(), t, counters, &mut span);
        self.tick_done();
    }

    /// Marks equity to the last mids for the daily loss and drawdown limits, and records any
    /// state change risk announces.
    fn mark_equity(&mut self, now_ms: i64, counters: &mut PipelineCounters) {
        let pnl: f64 = self
            .execution
            .positions()
            .iter()
            .map(|(symbol, p)| {
                p.realized_pnl + self.last_mid.get(symbol).map_or(0.0, |mid| p.unrealized_pnl(*mid))
            })
            .sum();
        self.equity = self.starting_equity + pnl;
        self.risk.on_equity(self.equity, now_ms);
        self.announce_state_changes(counters);
    }

    /// Journals, logs and counts the trading state changes risk made.
    fn announce_state_changes(&mut self, counters: &mut PipelineCounters) {
        for change in self.risk.take_changes() {
            self.record(Record::StateChange {
                at_ms: change.at_ms,
                from: format!("{:?}", change.from).to_uppercase(),
                to: format!("{:?}", change.to).to_uppercase(),
                reason: change.reason.clone(),
            });
            counters.state_changes.push(StateChangeReport {
                from: format!("{:?}", change.from).to_uppercase(),
                to: format!("{:?}", change.to).to_uppercase(),
                reason: change.reason,
                at_ms: change.at_ms,
            });
        }
    }

    /// The account the margin check uses: the one reported, or with several the one with the
    /// least free margin (the pipeline does not know which account an order will route to, so
    /// it checks against the tightest).
    fn margin_account(&self) -> Option<AccountSnapshot> {
        self.accounts.values().copied().min_by(|a, b| a.free_margin.total_cmp(&b.free_margin))
    }

    fn tick_done(&self) {
        self.progress.ticks_seen.fetch_add(1, Ordering::Release);
        self.progress.advanced.notify_waiters();
    }

    /// The champion's prediction and, during a rollout, the challenger's on the same vector;
    /// which one acts follows the challenger's role. `None` when the one to act failed.
    fn predict(&mut self, tick: &Tick, vector: &FeatureVector, counters: &mut PipelineCounters) -> Option<Predicted> {
        let x = vector.as_f32();
        let started = monotonic_ns();
        let champion = self.models.champion.model.predict(&x);
        let champion_ns = monotonic_ns().saturating_sub(started);
        let Some(challenger) = self.models.challenger.as_mut() else {
            return match champion {
                Ok(p) => {
                    counters.predictions += 1;
                    Some(Predicted { acted: p, by_challenger: false })
                }
                Err(error) => {
                    counters.inference_errors += 1;
                    tracing::warn!(chain_id = %tick.chain_id, %error, "inference failed");
                    None
                }
            };
        };
        let started = monotonic_ns();
        let trial = challenger.slot.model.predict(&x);
        let challenger_ns = monotonic_ns().saturating_sub(started);
        let wants = challenger.role.challenger_acts(tick.chain_id, &tick.symbol);
        match (&champion, &trial) {
            (Ok(a), Ok(b)) => {
                counters.predictions += 1;
                counters.challenger_predictions += 1;
                counters.challenger_acted += u64::from(wants);
                if let Some(comparison) = &mut self.comparison {
                    comparison.record(&tick.symbol, tick.time_msc, vector.mid, (*a, champion_ns), (*b, challenger_ns), wants);
                }
                Some(if wants { Predicted { acted: *b, by_challenger: true } } else { Predicted { acted: *a, by_challenger: false } })
            }
            (Ok(a), Err(error)) => {
                // A failing challenger never stops trading: the champion acts.
                counters.predictions += 1;
                counters.challenger_errors += 1;
                tracing::warn!(chain_id = %tick.chain_id, %error, model = %challenger.slot.label, "challenger inference failed; the champion acts");
                Some(Predicted { acted: *a, by_challenger: false })
            }
            (Err(error), Ok(b)) if wants => {
                counters.inference_errors += 1;
                counters.challenger_predictions += 1;
                counters.challenger_acted += 1;
                tracing::warn!(chain_id = %tick.chain_id, %error, "champion inference failed");
                Some(Predicted { acted: *b, by_challenger: true })
            }
            (Err(error), _) => {
                counters.inference_errors += 1;
                tracing::warn!(chain_id = %tick.chain_id, %error, "champion inference failed");
                None
            }
        }
    }

    /// The stale-model guard: why risk should refuse an order decided by the champion (or the
    /// challenger), if its model is older than allowed.
    fn model_flag(&self, by_challenger: bool) -> Option<String> {
        let limit = self.max_model_age_ms?;
        let slot = match (&self.models.challenger, by_challenger) {
            (Some(c), true) => &c.slot,
            _ => &self.models.champion,
        };
        let born = slot.born_ms?;
        let age = mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock) - born;
        (age > limit).then(|| format!("model {} is {:.1} days old, over the {:.1}-day limit", slot.label, age as f64 / 86_400_000.0, limit as f64 / 86_400_000.0))
    }

    fn decide(
        &mut self,
        tick: &Tick,
        closed_bar: Option<&Bar>,
        start: u64,
        counters: &mut PipelineCounters,
        span: &mut impl FnMut(Stage, u64) -> u64,
    ) {
        let features = self.featurizer.features(tick, closed_bar);
        if let Some(vector) = &features {
            self.online.put(vector);
            if let Some(history) = &self.history {
                history.push(HistoryPoint::features(vector));
            }
        }
        if let Some(comparison) = &mut self.comparison {
            comparison.on_mid(&tick.symbol, tick.time_msc, tick.mid());
        }
        let t = span(Stage::Features, start);
        let Some(vector) = features else { return };
        counters.feature_vectors += 1;
        let Some(predicted) = self.predict(tick, &vector, counters) else { return };
        let probability_up = predicted.acted;
        let t = span(Stage::Inference, t);
        let inputs = SizingInputs { equity: self.equity, price: tick.mid(), atr_bps: vector.values[ATR_FEATURE] };
        let changed = self.decision.decide(&tick.symbol, &[probability_up], inputs, tick.time_msc);
        counters.target_changes += u64::from(changed.is_some());
        let target = self.decision.target(&tick.symbol);
        let t = span(Stage::Decision, t);
        // Act on a target once: when it differs from the last target acted on and no order on
        // the symbol is in flight. An order whose outcome is pending is never doubled, and a
        // refused order is not retried on every tick.
        if self.acted_target.get(&tick.symbol) == Some(&target)
            || self.execution.has_in_flight(&tick.symbol)
        {
            return;
        }
        self.acted_target.insert(tick.symbol.clone(), target);
        let position = self.execution.position(&tick.symbol).lots;
        let delta = ((target - position) * 100.0).round() / 100.0;
        if delta == 0.0 {
            return;
        }
        let decision_price = if delta > 0.0 { tick.ask } else { tick.bid };
        let facts = Facts {
            positions: self.execution.positions().iter().map(|(s, p)| (s.clone(), p.lots)).collect(),
            mids: self.last_mid.clone(),
            open_orders: self.execution.in_flight_count(),
            feature_age_ms: tick.time_msc - vector.time_msc,
            model_flag: self.model_flag(predicted.by_challenger),
            account: self.margin_account(),
        };
        let check = OrderCheck { symbol: &tick.symbol, signed_lots: delta, price: decision_price, now_ms: tick.time_msc };
        let verdict = self.risk.check(check, &facts);
        let t = span(Stage::Risk, t);
        let decision = |outcome: String| Record::Decision {
            chain_id: tick.chain_id.to_string(),
            symbol: tick.symbol.to_string(),
            time_ms: tick.time_msc,
            probability: f64::from(probability_up),
            target_lots: target,
            outcome,
        };
        if let Err(rejection) = verdict {
            *counters.risk_rejections.entry(rejection.name()).or_default() += 1;
            counters.stale_model_flags += u64::from(matches!(rejection, mtml_decision::RiskRejection::StaleModel { .. }));
            tracing::info!(chain_id = %tick.chain_id, %rejection, "order refused by risk");
            self.record(decision(format!("risk:{rejection}")));
            return;
        }
        self.risk.on_order_sent(tick.time_msc);
        let order = self.execution.market_order(
            tick.chain_id,
            &tick.symbol,
            delta,
            decision_price,
            tick.received_ns,
        );
        self.progress.orders_in_flight.store(self.execution.in_flight_count() as u64, Ordering::Release);
        tracing::debug!(chain_id = %tick.chain_id, client_order_id = %order.client_order_id, lots = delta, "order");
        self.record_group(vec![
            decision("order".into()),
            Record::OrderCreated {
                client_order_id: order.client_order_id.clone(),
                chain_id: order.chain_id.to_string(),
                symbol: order.symbol.to_string(),
                side: side_name(order.side).into(),
                volume: order.volume,
                decision_price: order.decision_price,
                created_ms: tick.time_msc,
            },
        ]);
        if let Some(comparison) = &mut self.comparison {
            comparison.on_order(&order.client_order_id, predicted.by_challenger);
        }
        self.orders.submit(order);
        span(Stage::Execution, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atr_index_names_the_atr_feature() {
        assert_eq!(mtml_feature_store::FEATURE_SET.features[ATR_FEATURE].name, "atr_14");
    }
}

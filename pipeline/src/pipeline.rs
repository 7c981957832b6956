//! The tick path: ingestion, features, inference, decision, risk and execution, one tick at a
//! time, each stage a span of the tick's chain.
//!
//! [`Pipeline::on_tick`] and [`Pipeline::on_event`] are synchronous and do no I/O: the stores
//! and the journal are handed their points and records on channels they drain elsewhere, and
//! orders go to an [`OrderSink`]. [`Pipeline::spawn`] runs them on one dedicated thread, because
//! every stage is CPU work of microseconds and handing a tick from thread to thread would cost
//! more than the stages. The thread runs its own single-threaded runtime to wait on its inboxes
//! (ticks, execution events, commands), so the shared async runtime is never blocked by
//! inference.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mtml_core::clock::monotonic_ns;
use mtml_core::Outcome;
use mtml_core::{ChainId, ChainLog, ExecutionEvent, Notice, Notices, OrderSink, Stage, Tick};
use mtml_decision::{Applied, Checked, Desk, Proposal, RiskRejection, StateChange};
use mtml_feature_store::{DriftMonitor, FeatureVector, HistoryPoint, HistoryWriter, OnlineWriter};
use mtml_ingestion::QuoteState;
use mtml_journal::Record;
use mtml_rollout::{CompareSettings, Comparison, Models, Predicted};
use tokio::sync::mpsc;

use crate::command::PipelineCommand;
use crate::counters::{PipelineCounters, PipelineOutcome, PipelineProgress, StateChangeReport};
use crate::featurize::Featurizer;
use crate::records;

/// Index of `atr_14` in the feature vector, for volatility-targeted sizing.
const ATR_FEATURE: usize = 6;

/// The stages and what they hand off, owned by the pipeline thread. Built by
/// [`crate::PipelineBuilder`].
pub struct Pipeline {
    pub(crate) featurizer: Featurizer,
    pub(crate) online: Option<OnlineWriter>,
    pub(crate) history: Option<HistoryWriter>,
    pub(crate) models: Models,
    pub(crate) comparison: Option<Comparison>,
    pub(crate) compare: CompareSettings,
    pub(crate) desk: Desk,
    pub(crate) orders: Box<dyn OrderSink>,
    pub(crate) chain_log: Arc<ChainLog>,
    /// Ticks waiting in the inbox when the last command came (for snapshots).
    pub(crate) inbox_depth: usize,
    /// The live features against the training distribution, when one is known.
    pub(crate) drift: Option<Drift>,
    pub(crate) progress: Arc<PipelineProgress>,
    pub(crate) journal: Option<mpsc::UnboundedSender<Vec<Record>>>,
    /// Market time of the last tick, for records of events that carry none.
    pub(crate) now_ms: i64,
    /// Dates events before the first tick.
    pub(crate) clock: Arc<dyn mtml_core::clock::Clock>,
    pub(crate) counters: PipelineCounters,
    /// Where fills, refusals, state changes, drift and slow orders are told.
    pub(crate) notices: Notices,
    /// Tick arrival to order sent above this is a slow order, ns.
    pub(crate) slow_order_ns: u64,
    /// Chain ids of orders an operator asked for (closing positions).
    pub(crate) close_chains: mtml_core::ChainIdGenerator,
    /// Models already told stale (a model only grows older: once each, not once per refusal).
    pub(crate) told_stale: Vec<String>,
    /// Fills in market time (a replay): an order's outcome is due when these say.
    pub(crate) market_time_fills: Option<mtml_core::MarketTimeFills>,
    /// With fills in market time, the orders whose outcomes are awaited, with the market time
    /// each is due by.
    pub(crate) awaiting: Vec<(String, i64)>,
}

/// How long a replay's pipeline waits for an outcome due in market time before going on
/// without it (counted in `late_outcomes`: that run may differ from the others).
const OUTCOME_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("models", &self.models.describe()).field("counters", &self.counters).finish_non_exhaustive()
    }
}

/// Feature drift watch: the monitor, the alert threshold, and the features above it now.
pub(crate) struct Drift {
    pub(crate) monitor: DriftMonitor,
    pub(crate) threshold: f64,
    pub(crate) drifted: Vec<String>,
}

/// Vectors between two drift checks.
const DRIFT_CHECK_EVERY: u64 = 256;

impl Drift {
    /// Each feature's PSI now; a feature newly above the threshold (once the window is full: a
    /// part of it would be compared with the whole of the training data) raises an alert, once
    /// until it comes back under.
    fn check(&mut self, counters: &mut PipelineCounters, window: usize, notices: &Notices) {
        let ready = self.monitor.observed() >= window;
        let mut drifted = Vec::new();
        for (feature, psi) in self.monitor.psi() {
            counters.feature_psi.insert(feature.to_owned(), psi);
            if ready && psi > self.threshold {
                if !self.drifted.iter().any(|f| f == feature) {
                    counters.drift_alerts += 1;
                    tracing::warn!(feature, psi, threshold = self.threshold, "feature drift: live values have moved from the training distribution");
                    notices.emit(|| Notice::Drift { feature: feature.to_owned(), psi, threshold: self.threshold });
                }
                drifted.push(feature.to_owned());
            }
        }
        self.drifted = drifted;
    }
}

impl Pipeline {
    /// Starts the pipeline thread. It stops when every tick sender is dropped, settles the
    /// execution events already reported, and returns what it knew.
    pub fn spawn(
        mut self,
        mut ticks: mpsc::Receiver<Tick>,
        mut events: mpsc::Receiver<ExecutionEvent>,
        mut commands: mpsc::UnboundedReceiver<PipelineCommand>,
    ) -> std::io::Result<std::thread::JoinHandle<PipelineOutcome>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        std::thread::Builder::new().name("mtml-pipeline".into()).spawn(move || {
            let span = tracing::info_span!("pipeline");
            let _entered = span.enter();
            runtime.block_on(async {
                loop {
                    tokio::select! {
                        biased;
                        Some(event) = events.recv() => self.on_event(&event),
                        Some(command) = commands.recv() => {
                            self.inbox_depth = ticks.len();
                            self.on_command(command);
                        }
                        tick = ticks.recv() => match tick {
                            Some(tick) => {
                                self.settle_due(tick.time_msc, &mut events).await;
                                self.on_tick(&tick);
                            }
                            None => break,
                        },
                    }
                }
                // Settle whatever the bridge reported before it closed.
                while let Ok(event) = events.try_recv() {
                    self.on_event(&event);
                }
            });
            self.finish()
        })
    }

    /// With fills in market time, applies the outcomes of the orders due by `now_ms` before the
    /// tick of that time, waiting for them if they have not arrived: then what the tick decides
    /// does not depend on how fast the outcomes travelled, and every run gives the same orders.
    async fn settle_due(&mut self, now_ms: i64, events: &mut mpsc::Receiver<ExecutionEvent>) {
        if self.market_time_fills.is_none() {
            return;
        }
        loop {
            let execution = self.desk.execution();
            // Settled, or waiting on the books (a lost answer): no longer awaited here.
            self.awaiting.retain(|(id, _)| execution.state_of(id).is_some_and(|state| state != mtml_decision::OrderState::Unknown));
            if !self.awaiting.iter().any(|(_, due_ms)| *due_ms <= now_ms) {
                return;
            }
            match tokio::time::timeout(OUTCOME_WAIT, events.recv()).await {
                Ok(Some(event)) => self.on_event(&event),
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!(orders = self.awaiting.len(), "an order's outcome is due in market time and has not come; going on without it");
                    self.counters.late_outcomes += 1;
                    self.awaiting.retain(|(_, due_ms)| *due_ms > now_ms);
                    return;
                }
            }
        }
    }

    /// Closes the bars still open and reports everything the pipeline knew.
    pub fn finish(mut self) -> PipelineOutcome {
        if let Some(drift) = &mut self.drift {
            let window = drift.monitor.window();
            drift.check(&mut self.counters, window, &self.notices);
        }
        PipelineOutcome {
            execution: self.desk.execution().stats().clone(),
            positions: self.desk.positions().clone(),
            last_mid: self.desk.last_mids().clone(),
            final_bars: self.featurizer.flush_bars(),
            comparison: self.comparison.as_ref().map(Comparison::report),
            models: self.models.describe(),
            trading_state: self.desk.trading_state(),
            counters: self.counters,
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> &PipelineCounters {
        &self.counters
    }

    /// Applies what the bridge reported, and journals what it changed. A terminal's books first
    /// settle the orders whose outcome is unknown (each settling fill, ack or rejection goes
    /// through here like one the bridge reported), then reconcile positions.
    pub fn on_event(&mut self, event: &ExecutionEvent) {
        if let ExecutionEvent::TerminalPositions { account, evidence, symbols, .. } = event {
            for settling in self.desk.execution().settlement(account, evidence, symbols) {
                self.on_event(&settling);
            }
        }
        if let (ExecutionEvent::Filled(fill), Some(comparison)) = (event, &mut self.comparison) {
            comparison.on_fill(fill);
        }
        let applied = self.desk.on_event(event);
        if matches!(applied, Applied::Nothing) {
            return;
        }
        self.tell(event, &applied);
        self.progress.orders_in_flight.store(self.desk.execution().in_flight_count() as u64, Ordering::Release);
        if self.journal.is_some() {
            let group = records::execution_event(event, &applied, self.desk.execution(), self.event_time_ms());
            self.record_group(group);
        }
    }

    /// Closes positions on an operator's command: a market order per symbol, each the first
    /// span of a chain of its own.
    fn close(&mut self, symbol: Option<mtml_core::Symbol>) -> Vec<crate::Closed> {
        let mut symbols: Vec<mtml_core::Symbol> = match symbol {
            Some(symbol) => vec![symbol],
            None => self.desk.positions().iter().filter(|(_, p)| p.lots.abs() >= 0.005).map(|(s, _)| s.clone()).collect(),
        };
        symbols.sort();
        let now_ms = self.event_time_ms();
        let mut closed = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            let outcome = self.desk.close(&symbol, now_ms).map(|approved| {
                let chain = self.close_chains.next_id();
                let order = self.desk.execute(&approved, chain, monotonic_ns());
                tracing::info!(chain_id = %chain, client_order_id = %order.client_order_id, lots = approved.signed_lots, %symbol, "closing on an operator's command");
                self.record(records::order_created(&order, now_ms));
                let sent = (order.client_order_id.clone(), approved.signed_lots);
                self.orders.submit(order);
                sent
            });
            closed.push(crate::Closed { symbol, outcome });
        }
        self.progress.orders_in_flight.store(self.desk.execution().in_flight_count() as u64, Ordering::Release);
        closed
    }

    /// Tells a person watching about a fill or a broker's refusal.
    fn tell(&self, event: &ExecutionEvent, applied: &Applied) {
        match (event, applied) {
            (ExecutionEvent::Filled(fill), Applied::Fill(applied)) => self.notices.emit(|| Notice::Fill {
                symbol: fill.symbol.clone(),
                side: fill.side,
                volume: fill.volume,
                price: fill.price,
                slippage: applied.slippage,
                chain_id: fill.chain_id,
            }),
            (ExecutionEvent::Rejected { chain_id, client_order_id, retcode, reason }, _) => {
                self.notices.emit(|| Notice::BrokerRejected {
                    client_order_id: client_order_id.clone(),
                    retcode: *retcode,
                    text: reason.clone(),
                    chain_id: *chain_id,
                });
            }
            _ => {}
        }
    }

    /// Applies an operator command between two ticks.
    pub fn on_command(&mut self, command: PipelineCommand) {
        match command {
            PipelineCommand::SetTradingState { state, reason, reply } => {
                let (result, changes) = self.desk.set_state(state, &reason, self.event_time_ms());
                self.announce(changes);
                let _ = reply.send(result);
            }
            PipelineCommand::Close { symbol, reply } => {
                let _ = reply.send(self.close(symbol));
            }
            PipelineCommand::GetTradingState { reply } => {
                let _ = reply.send(self.desk.trading_state());
            }
            PipelineCommand::SetModels { models, reply } => {
                self.set_models(*models);
                self.counters.model_swaps += 1;
                let _ = reply.send(());
            }
            PipelineCommand::Compare { reply } => {
                let _ = reply.send(self.comparison.as_ref().map(Comparison::report));
            }
            PipelineCommand::Snapshot { reply } => {
                let positions = self.desk.positions().clone();
                let _ = reply.send(Box::new(crate::PipelineSnapshot {
                    counters: self.counters.clone(),
                    execution: self.desk.execution().stats().clone(),
                    trading_state: self.desk.trading_state(),
                    equity: self.desk.equity(),
                    realized_pnl: positions.values().map(|p| p.realized_pnl).sum(),
                    unrealized_pnl: self.desk.unrealized_pnl(),
                    drawdown: self.desk.drawdown(),
                    inbox_depth: self.inbox_depth,
                    comparison: self.comparison.as_ref().map(Comparison::report),
                    positions,
                    orders_in_flight: self.desk.execution().in_flight_count(),
                    marks: self.desk.last_mids().clone(),
                }));
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
    /// When something not carried by a tick happens: the last tick's market time, or before the
    /// first tick the wall clock (never 0).
    fn event_time_ms(&self) -> i64 {
        if self.now_ms > 0 { self.now_ms } else { self.clock.now_ms() }
    }

    fn record_group(&self, group: Vec<Record>) {
        if let Some(journal) = &self.journal
            && !group.is_empty()
            && journal.send(group).is_err()
        {
            tracing::error!("journal writer stopped; record not written");
        }
    }

    /// Journals, logs and counts the trading state changes risk made.
    fn announce(&mut self, changes: Vec<StateChange>) {
        for change in changes {
            self.record(records::state_change(&change));
            self.notices.emit(|| Notice::TradingState {
                from: change.from.name().to_owned(),
                to: change.to.name().to_owned(),
                reason: change.reason.clone(),
            });
            self.counters.state_changes.push(StateChangeReport {
                from: change.from.name().to_owned(),
                to: change.to.name().to_owned(),
                reason: change.reason,
                at_ms: change.at_ms,
            });
        }
    }

    fn tick_done(&self, chain: ChainId) {
        self.chain_log.end(chain);
        self.progress.ticks_seen.fetch_add(1, Ordering::Release);
        self.progress.advanced.notify_waiters();
    }

    /// Runs one tick through every stage.
    pub fn on_tick(&mut self, tick: &Tick) {
        self.counters.ticks_seen += 1;
        let chain = tick.chain_id;
        let log = Arc::clone(&self.chain_log);
        let span = |stage, start: u64| {
            let end = monotonic_ns();
            log.record(chain, stage, start, end - start);
            end
        };
        let start = monotonic_ns();
        let ingested = self.featurizer.ingest(tick);
        let ingested = match ingested {
            Ok(ingested) => ingested,
            Err(reason) => {
                log.record_outcome(chain, Stage::Ingest, start, monotonic_ns() - start, Outcome::Rejected(reason.name()));
                *self.counters.ticks_rejected.entry(reason.name()).or_default() += 1;
                tracing::debug!(chain_id = %chain, symbol = %tick.symbol, %reason, "tick rejected");
                self.tick_done(chain);
                return;
            }
        };
        let t = span(Stage::Ingest, start);
        self.counters.ticks_ingested += 1;
        self.now_ms = tick.time_msc;
        let changes = self.desk.on_quote(&tick.symbol, tick.mid(), tick.time_msc);
        self.announce(changes);
        match ingested.quote {
            QuoteState::Crossed => self.counters.crossed_quotes += 1,
            QuoteState::Locked => self.counters.locked_quotes += 1,
            QuoteState::Normal => {}
        }
        self.counters.bars += u64::from(ingested.closed_bar.is_some());
        self.counters.wider_bars += ingested.closed_wider.len() as u64;
        if let Some(history) = &self.history {
            history.push(HistoryPoint::tick(tick));
            for bar in ingested.closed_bar.iter().chain(&ingested.closed_wider) {
                history.push(HistoryPoint::bar(bar, tick.chain_id));
            }
        }
        let features = self.featurizer.features(tick, ingested.closed_bar.as_ref());
        if let Some(vector) = &features {
            if let Some(online) = &self.online {
                online.put(vector);
            }
            if let Some(history) = &self.history {
                history.push(HistoryPoint::features(vector));
            }
        }
        if let Some(comparison) = &mut self.comparison {
            comparison.on_mid(&tick.symbol, tick.time_msc, tick.mid());
        }
        let t = span(Stage::Features, t);
        if let Some(vector) = features {
            self.counters.feature_vectors += 1;
            if let Some(drift) = &mut self.drift {
                drift.monitor.observe(&vector);
                if self.counters.feature_vectors.is_multiple_of(DRIFT_CHECK_EVERY) {
                    let window = drift.monitor.window();
                    drift.check(&mut self.counters, window, &self.notices);
                }
            }
            self.decide(tick, &vector, t, span);
        }
        self.tick_done(chain);
    }

    /// Inference, decision, risk and execution on a feature vector.
    fn decide(&mut self, tick: &Tick, vector: &FeatureVector, t: u64, span: impl Fn(Stage, u64) -> u64) {
        let Some(predicted) = self.predict(tick, vector) else {
            self.chain_log.record_outcome(tick.chain_id, Stage::Inference, t, monotonic_ns() - t, Outcome::Error("inference_error"));
            return;
        };
        let t = span(Stage::Inference, t);
        let decided = self.desk.decide(&tick.symbol, predicted.acted, tick.mid(), vector.values[ATR_FEATURE], tick.time_msc);
        self.counters.target_changes += u64::from(decided.changed);
        let t = span(Stage::Decision, t);
        let slot = self.models.acting(predicted.by_challenger);
        let proposal = Proposal {
            symbol: &tick.symbol,
            target: decided.target,
            bid: tick.bid,
            ask: tick.ask,
            now_ms: tick.time_msc,
            features_ms: vector.time_msc,
            model_label: &slot.label,
            model_registered_ms: slot.born_ms,
        };
        let approved = match self.desk.check(proposal) {
            Checked::Hold => return,
            Checked::Refused(rejection) => {
                self.chain_log.record_outcome(tick.chain_id, Stage::Risk, t, monotonic_ns() - t, Outcome::Rejected(rejection.name()));
                *self.counters.risk_rejections.entry(rejection.name()).or_default() += 1;
                self.counters.stale_model_flags += u64::from(matches!(rejection, RiskRejection::StaleModel { .. }));
                tracing::info!(chain_id = %tick.chain_id, %rejection, "order refused by risk");
                match &rejection {
                    RiskRejection::StaleModel { .. } => {
                        if !self.told_stale.contains(&slot.label) {
                            self.told_stale.push(slot.label.clone());
                            self.notices.emit(|| Notice::StaleModel { model: slot.label.clone(), detail: rejection.to_string() });
                        }
                    }
                    _ => self.notices.emit(|| Notice::RiskRejected {
                        symbol: tick.symbol.clone(),
                        reason: rejection.name().to_owned(),
                        detail: rejection.to_string(),
                        chain_id: tick.chain_id,
                    }),
                }
                self.record(records::decision(tick, predicted.acted, decided.target, format!("risk:{rejection}")));
                return;
            }
            Checked::Approved(approved) => approved,
        };
        let t = span(Stage::Risk, t);
        let order = self.desk.execute(&approved, tick.chain_id, tick.received_ns);
        self.progress.orders_in_flight.store(self.desk.execution().in_flight_count() as u64, Ordering::Release);
        tracing::debug!(chain_id = %tick.chain_id, client_order_id = %order.client_order_id, lots = approved.signed_lots, "order");
        self.record_group(vec![
            records::decision(tick, predicted.acted, decided.target, "order".into()),
            records::order_created(&order, tick.time_msc),
        ]);
        if let Some(comparison) = &mut self.comparison {
            comparison.on_order(&order.client_order_id, predicted.by_challenger);
        }
        let side = order.side;
        if let Some(fills) = self.market_time_fills {
            self.awaiting.push((order.client_order_id.clone(), fills.due_ms(tick.time_msc)));
        }
        self.orders.submit(order);
        let sent = span(Stage::Execution, t);
        self.notices.emit(|| Notice::Signal {
            symbol: tick.symbol.clone(),
            side,
            volume: approved.signed_lots.abs(),
            probability_up: predicted.acted,
            model: slot.label.clone(),
            chain_id: tick.chain_id,
        });
        let tick_to_order_ns = sent.saturating_sub(tick.received_ns);
        if tick.received_ns > 0 && tick_to_order_ns > self.slow_order_ns {
            self.counters.slow_orders += 1;
            self.notices.emit(|| Notice::SlowOrder {
                symbol: tick.symbol.clone(),
                tick_to_order_us: tick_to_order_ns / 1_000,
                threshold_us: self.slow_order_ns / 1_000,
                chain_id: tick.chain_id,
            });
        }
    }

    /// The champion's prediction and, during a rollout, the challenger's on the same vector;
    /// which one acts follows the challenger's role. `None` when the one to act failed.
    fn predict(&mut self, tick: &Tick, vector: &FeatureVector) -> Option<Predicted> {
        let counters = &mut self.counters;
        let x = vector.as_f32();
        let started = monotonic_ns();
        let champion = self.models.champion.model.predict(&x);
        let champion_ns = monotonic_ns().saturating_sub(started);
        counters.model_ran(&self.models.champion.label, champion.is_ok(), champion_ns);
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
        counters.model_ran(&challenger.slot.label, trial.is_ok(), challenger_ns);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atr_index_names_the_atr_feature() {
        assert_eq!(mtml_feature_store::FEATURE_SET.features[ATR_FEATURE].name, "atr_14");
    }
}
